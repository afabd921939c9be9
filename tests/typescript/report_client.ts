// A client's use of the report and estimate types generated from the service's
// /openapi.json by openapi-typescript. test_typescript_client.py writes the
// generated declarations to ./schema.d.ts next to a copy of this file and
// compiles it with `tsc --noEmit --strict`: it must compile, and each
// `@ts-expect-error` below must find an error (with `any` types it would not).

import type { components } from "./schema";

type Report = components["schemas"]["ProfileReport"];
type Estimate = components["schemas"]["EstimateReport"];
type ModelList = components["schemas"]["ModelList"];
type Comparison = components["schemas"]["ComparisonReport"];

// --- Nothing typed any or unknown, at any depth ------------------------------

type IsAny<T> = 0 extends 1 & T ? true : false;
type IsUnknown<T> = IsAny<T> extends true ? false : unknown extends T ? true : false;
type Depth = [never, 0, 1, 2, 3, 4, 5, 6];
/** The paths of fields typed any or unknown ("never" when there are none). */
type Loose<T, P extends string = "", D extends number = 7> = [D] extends [never]
  ? never
  : IsAny<T> extends true
    ? P
    : IsUnknown<T> extends true
      ? P
      : T extends readonly (infer U)[]
        ? Loose<U, `${P}[]`, Depth[D]>
        : T extends object
          ? { [K in keyof T & string]-?: Loose<T[K], `${P}.${K}`, Depth[D]> }[keyof T &
              string]
          : never;

type Typed<T> = [Loose<T>] extends [never] ? true : Loose<T>;
export const reportIsTyped: Typed<Report> = true;
export const estimateIsTyped: Typed<Estimate> = true;
export const modelListIsTyped: Typed<ModelList> = true;
export const comparisonIsTyped: Typed<Comparison> = true;

// --- What a dashboard writes ---------------------------------------------------

type Layer = components["schemas"]["ReportLayer"];

function* walk(layers: Layer[], prefix = ""): Generator<[string, Layer]> {
  for (const layer of layers) {
    const path = prefix + layer.name;
    yield [path, layer];
    yield* walk(layer.layers, path + "/");
  }
}

export function binaryShare(report: Report): string {
  let binary = 0;
  for (const [, layer] of walk(report.layers)) {
    binary += layer.params_by_bits["1"] ?? 0;
  }
  const compression = report.totals.compression;
  const ratio = compression === null ? "n/a" : `${compression.toFixed(2)}x`;
  return `${report.model.name}: ${binary} of ${report.totals.params} binary, ${ratio}`;
}

export function knownBeforeBuilding(estimate: Estimate): number[] {
  const rows = estimate.layers.map((layer) => layer.macs + layer.bops);
  const unknown: null = estimate.layers[0].output_precision;
  const peak: null = estimate.totals.peak_activation_bytes;
  return [...rows, estimate.memory.max_batch, unknown ?? 0, peak ?? 0];
}

export function sizes(list: ModelList): [string, number, number | null, boolean][] {
  return list.models.flatMap((model) =>
    model.version_details.map(
      (v): [string, number, number | null, boolean] => [
        `${model.name}:${v.version}`,
        v.memory_bytes,
        v.compression,
        v.weights_uploaded,
      ],
    ),
  );
}

export function memoryDelta(comparison: Comparison): number | null {
  return comparison.totals["memory_bytes"]?.delta ?? null;
}

// --- Mistakes the types must catch ----------------------------------------------

export function mistakes(report: Report, estimate: Estimate): void {
  // @ts-expect-error params is a number
  const params: string = report.totals.params;
  // @ts-expect-error compression may be null
  const compression: number = report.totals.compression;
  // @ts-expect-error a report has no such field
  const missing = report.totals.not_a_field;
  // @ts-expect-error an estimate cannot know a layer's output precision
  const precision: number = estimate.layers[0].output_precision;
  // @ts-expect-error schema_version is the literal 1
  const version: 2 = report.schema_version;
  void [params, compression, missing, precision, version];
}
