"""The report and the estimate are typed in OpenAPI, and real responses conform.

Oracles: the documents the running service returns (``/v2/summary``,
``/v2/estimate``) for the MNIST BNN, a zoo model and one model per allowed
layer type, validated in strict mode and compared key by key with the schema
(both ways: no key the schema lacks, no schema field never written); the
estimate's known fields are compared with the report of the built model.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator
from typing import Any

import keras
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from service_samples import MNIST
from test_service_estimate import DEFINITIONS

from bnncore.models import profile
from bnncore_service.schemas.reports import (
    ComparisonReport,
    EstimateReport,
    EstimateReportLayer,
    ProfileReport,
    ReportLayer,
)

ZOO = {"zoo": "QuickNetSmall", "input_shape": [32, 32, 3], "num_classes": 10}
GRAPHS: list[tuple[str, dict[str, Any]]] = [("mnist", MNIST), *DEFINITIONS]
REPORTED = [*GRAPHS, ("zoo-QuickNetSmall", ZOO)]


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models an annotation holds (``list[X]``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _check_keys(model: type[BaseModel], data: Any, path: str) -> int:
    """Asserts ``data``'s keys are exactly ``model``'s fields, recursively.

    Returns:
        How many objects were checked.
    """
    assert isinstance(data, dict), path
    assert set(data) == set(model.model_fields), (
        path,
        "not in schema:",
        set(data) - set(model.model_fields),
        "never written:",
        set(model.model_fields) - set(data),
    )
    checked = 1
    for name, field in model.model_fields.items():
        (inner, *others) = [*_models_in(field.annotation), None]
        assert not others or others == [None], (path, name)
        if inner is None or data[name] is None:
            continue
        value = data[name]
        if typing.get_origin(field.annotation) is dict:  # keyed by data
            items = list(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value))
        else:
            items = [("", value)]
        for key, item in items:
            checked += _check_keys(inner, item, f"{path}.{name}[{key}]")
    return checked


@pytest.fixture(scope="module")
def served() -> Iterator[TestClient]:
    import tempfile

    from bnncore_service.config import Settings
    from bnncore_service.main import create_app

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(data_dir=data_dir))
        with TestClient(app) as client:
            yield client


@pytest.fixture(scope="module")
def reports(served: TestClient) -> dict[str, str]:
    out = {}
    for case, definition in REPORTED:
        response = served.post("/v2/summary", json=definition)
        assert response.status_code == 200, (case, response.text)
        out[case] = response.text
    return out


@pytest.mark.parametrize("case", [case for case, _ in REPORTED])
def test_report_conforms_to_schema(reports: dict[str, str], case: str) -> None:
    text = reports[case]
    report = ProfileReport.model_validate_json(text, strict=True)
    assert _check_keys(ProfileReport, json.loads(text), case) > 2
    assert report.layers, case


def test_nested_model_report_conforms_to_schema() -> None:
    # The service's models are flat; the library's document nests a model's
    # layers under its row, which the schema types recursively.
    inner = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="inner_dense")], name="block"
    )
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)), name="outer")
    text = profile(model).to_json()
    report = ProfileReport.model_validate_json(text, strict=True)
    (nested,) = [row for row in report.layers if row.layers]
    assert [row.name for row in nested.layers] == ["inner_dense"]
    rows = [*report.layers, *nested.layers]
    weights = sum(len(row.weights) for row in rows)
    assert weights == 4  # the inner and the outer Dense: kernel and bias each
    # The document, its model and totals, every row and every weight.
    assert _check_keys(ProfileReport, json.loads(text), "nested") == (
        3 + len(rows) + weights
    )


def _known_fields_agree(estimated: Any, reported: Any, path: str) -> int:
    """Every non-null value of the estimate equals the report's; returns how
    many leaves were compared."""
    if estimated is None:
        return 0
    if isinstance(estimated, dict):
        return sum(
            _known_fields_agree(value, reported[key], f"{path}.{key}")
            for key, value in estimated.items()
        )
    if isinstance(estimated, list) and estimated and isinstance(estimated[0], dict):
        assert len(estimated) == len(reported), path
        return sum(
            _known_fields_agree(e, r, f"{path}[{i}]")
            for i, (e, r) in enumerate(zip(estimated, reported, strict=True))
        )
    assert estimated == reported, (path, estimated, reported)
    return 1


ESTIMATE_ONLY = {"name", "inputs", "outputs", "memory"}


@pytest.mark.parametrize("case", [case for case, _ in GRAPHS])
def test_estimate_has_the_report_shape(
    served: TestClient, reports: dict[str, str], case: str
) -> None:
    definition = dict(GRAPHS)[case]
    response = served.post("/v2/estimate", json=definition)
    assert response.status_code == 200, response.text
    estimate = EstimateReport.model_validate_json(response.text, strict=True)
    document = response.json()
    _check_keys(EstimateReport, document, case)
    report = json.loads(reports[case])
    # Same shape: the report's keys everywhere, in its order, plus the
    # estimate's own.
    assert [k for k in document if k not in ESTIMATE_ONLY] == list(report)
    assert list(document["model"]) == list(report["model"])
    assert list(document["totals"]) == [*report["totals"], "activation_elements"]
    for mine, theirs in zip(document["layers"], report["layers"], strict=True):
        assert list(mine) == list(theirs)
        for w_mine, w_theirs in zip(mine["weights"], theirs["weights"], strict=True):
            assert list(w_mine) == list(w_theirs)
    shared = {k: v for k, v in document.items() if k not in ESTIMATE_ONLY}
    shared["totals"] = dict(shared["totals"])
    del shared["totals"]["activation_elements"]
    compared = _known_fields_agree(shared, report, case)
    assert compared > 30
    # The estimate's own fields restate the model's.
    assert estimate.name == estimate.model.name == report["model"]["name"]
    assert estimate.inputs == report["model"]["input_shapes"]
    assert estimate.outputs == report["model"]["output_shapes"]
    assert estimate.totals.activation_elements == sum(
        row["activation_elements"] for row in report["layers"]
    )


def test_estimate_of_a_nested_keras_model_is_flat(served: TestClient) -> None:
    inputs = keras.Input((6, 6, 2), name="image")
    block = keras.Sequential(
        [keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, name="inner_conv")],
        name="block",
    )
    model = keras.Model(
        inputs, keras.layers.GlobalAveragePooling2D(name="pool")(block(inputs))
    )
    document = json.loads(model.to_json())
    estimate = served.post("/v2/estimate", json=document)
    report = served.post("/v2/summary", json=document)
    assert estimate.status_code == report.status_code == 200, estimate.text
    EstimateReport.model_validate_json(estimate.text, strict=True)
    assert [row["layers"] for row in estimate.json()["layers"]] == [[], []]
    assert _known_fields_agree(estimate.json()["layers"], report.json()["layers"], "")


def test_comparison_conforms_to_schema(served: TestClient) -> None:
    # MNIST against a copy with a float first convolution and a wider head: a
    # layer changes, by-bits keys appear on one side only.
    other = json.loads(json.dumps(MNIST))
    del other["layers"][0]["kernel_quantizer"]
    other["layers"][-1]["units"] = 12
    reply = served.post("/v2/compare", json={"a": MNIST, "b": other})
    assert reply.status_code == 200, reply.text
    comparison = ComparisonReport.model_validate_json(reply.text, strict=True)
    document = reply.json()
    checked = _check_keys(ComparisonReport, document, "compare")
    changes = len(document["totals"]) + sum(
        len(layer["changes"]) for layer in document["layers"]
    )
    assert checked == 3 + len(document["layers"]) + changes
    assert comparison.totals["params_by_bits.32"].delta == 288 + 2  # conv, biases
    assert comparison.only_in_a == comparison.only_in_b == []


# ----------------------------------------------------------------------------
# OpenAPI
# ----------------------------------------------------------------------------


def _reachable(schemas: dict[str, Any], root: str) -> dict[str, Any]:
    """The component schemas reachable from ``root`` by ``$ref``."""
    seen: dict[str, Any] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = schemas[name]
        refs = json.dumps(schemas[name]).split('"$ref": "#/components/schemas/')
        todo += [ref.split('"')[0] for ref in refs[1:]]
    return seen


def _untyped(schema: Any, path: str) -> Iterator[str]:
    """Places where a schema admits anything (``{}``, a bare object, extra keys)."""
    if not isinstance(schema, dict):
        return
    kinds = {"type", "$ref", "anyOf", "oneOf", "allOf", "const", "enum"}
    if not kinds & set(schema):
        yield f"{path}: no type"
    if schema.get("type") == "object":
        extra = schema.get("additionalProperties", True)
        if "properties" not in schema and not isinstance(extra, dict):
            yield f"{path}: untyped object"
        if "properties" in schema and extra is not False:
            yield f"{path}: admits extra keys"
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _untyped(schema[key], f"{path}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        for i, option in enumerate(schema.get(key, [])):
            yield from _untyped(option, f"{path}.{key}[{i}]")
    for name, prop in schema.get("properties", {}).items():
        if "description" not in prop:
            yield f"{path}.{name}: no description"
        yield from _untyped(prop, f"{path}.{name}")


@pytest.fixture(scope="module")
def openapi(served: TestClient) -> dict[str, Any]:
    response = served.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


TYPED_COMPONENTS = {
    "ProfileReport": {"ReportModel", "ReportLayer", "ReportWeight", "ReportTotals"},
    "EstimateReport": {
        "EstimateReportModel",
        "EstimateReportLayer",
        "EstimateReportWeight",
        "EstimateReportTotals",
        "EstimateMemory",
    },
    "ComparisonReport": {"ComparedModel", "ComparedLayer", "ChangeValue"},
    "ModelList": {"ModelSummary", "VersionSummary"},
}


@pytest.mark.parametrize("root", list(TYPED_COMPONENTS))
def test_openapi_types_every_field(openapi: dict[str, Any], root: str) -> None:
    schemas = openapi["components"]["schemas"]
    reachable = _reachable(schemas, root)
    assert set(reachable) == {root, *TYPED_COMPONENTS[root]}
    problems = [p for name, s in reachable.items() for p in _untyped(s, name)]
    assert problems == []


def test_untyped_schemas_are_detected() -> None:
    # The checker above must be able to fail.
    assert list(_untyped({"type": "object"}, "x")) == ["x: untyped object"]
    assert list(_untyped({"properties": {"a": {}}, "type": "object"}, "x")) == [
        "x: admits extra keys",
        "x.a: no description",
        "x.a: no type",
    ]


@pytest.mark.parametrize(
    ("method", "path", "component"),
    [
        ("post", "/v2/summary", "ProfileReport"),
        ("get", "/v2/models/{name}/summary", "ProfileReport"),
        ("get", "/v2/models/{name}/versions/{version}/summary", "ProfileReport"),
        ("post", "/v2/estimate", "EstimateReport"),
        ("post", "/v2/compare", "ComparisonReport"),
        ("get", "/v2/compare", "ComparisonReport"),
        ("get", "/v2/models", "ModelList"),
    ],
    ids=[
        "summary",
        "model-summary",
        "version-summary",
        "estimate",
        "compare-definitions",
        "compare-registered",
        "model-list",
    ],
)
def test_routes_declare_the_typed_response(
    openapi: dict[str, Any], method: str, path: str, component: str
) -> None:
    content = openapi["paths"][path][method]["responses"]["200"]["content"]
    schema = content["application/json"]["schema"]
    assert schema == {"$ref": f"#/components/schemas/{component}"}


def _null_fields(model: type[BaseModel]) -> set[str]:
    return {
        name
        for name, field in model.model_fields.items()
        if field.annotation is types.NoneType
    }


def test_estimate_nulls_are_what_the_report_knows_after_building() -> None:
    # Fields an estimate cannot know are typed null there, and are typed (not
    # null) in the report: each is documented as absent in the estimate.
    nulls = _null_fields(EstimateReportLayer)
    assert nulls == {
        "output_precision",
        "activation_bytes",
        "peak_activation_bytes",
        "notes",
    }
    for name in nulls:
        assert ReportLayer.model_fields[name].annotation is not types.NoneType
        assert "null in an estimate" in (
            EstimateReportLayer.model_fields[name].description or ""
        )


# ----------------------------------------------------------------------------
# The model list carries each version's sizes
# ----------------------------------------------------------------------------


def _small_bnn() -> keras.Model:
    from bnncore.layers import QuantConv2D, QuantDense

    binary = {"kernel_quantizer": "ste_sign", "kernel_constraint": "weight_clip"}
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            QuantConv2D(4, 3, use_bias=False, name="conv1", **binary),
            keras.layers.BatchNormalization(name="bn1"),
            keras.layers.Flatten(name="flat"),
            QuantDense(3, input_quantizer="ste_sign", name="dense1", **binary),
        ],
        name="bnn",
    )


def test_model_list_carries_sizes_without_building(tmp_path: Any) -> None:
    from bnncore import export
    from bnncore_service.config import Settings
    from bnncore_service.main import create_app
    from bnncore_service.schemas.reports import ModelList

    settings = Settings(data_dir=tmp_path / "data")
    bnn = _small_bnn()
    wider = json.loads(json.dumps(MNIST))
    wider["layers"][-1]["units"] = 7
    registered = [
        ("bnn", export.to_definition(bnn)),
        ("mnist", MNIST),
        ("mnist", wider),
        ("zoo", ZOO),
    ]
    with TestClient(create_app(settings)) as client:
        for name, definition in registered:
            reply = client.post(
                "/v2/models", json={"name": name, "definition": definition}
            )
            assert reply.status_code == 201, reply.text
        reply = client.put(
            "/v2/models/bnn/versions/1/weights",
            content=export.to_bytes(bnn),
            headers={"content-type": "application/octet-stream"},
        )
        assert reply.status_code == 201, reply.text

    # A fresh app on the same store: nothing built, nothing cached.
    app = create_app(settings)
    with TestClient(app) as client:
        reply = client.get("/v2/models")
        assert reply.status_code == 200, reply.text
        listing = ModelList.model_validate_json(reply.text, strict=True)
        _check_keys(ModelList, reply.json(), "list")
        assert len(app.state.runtime.cache) == 0  # no model was built
        assert len(app.state.size_cache) == 4  # one estimate per definition
        assert client.get("/v2/models").json() == reply.json()  # from the cache
        assert len(app.state.size_cache) == 4

        assert [(m.name, m.versions) for m in listing.models] == [
            ("bnn", [1]),
            ("mnist", [1, 2]),
            ("zoo", [1]),
        ]
        for model in listing.models:
            assert [d.version for d in model.version_details] == model.versions
            for detail in model.version_details:
                url = f"/v2/models/{model.name}/versions/{detail.version}"
                totals = client.get(f"{url}/summary").json()["totals"]
                metadata = client.get(url).json()
                assert detail.params == totals["params"]
                assert detail.memory_bytes == totals["memory_bytes"]
                assert detail.content_hash == metadata["content_hash"]
                assert detail.created_at == metadata["created_at"]
                assert detail.weights_uploaded == (metadata["weights"] == "uploaded")
                if model.name == "zoo":  # no analytic estimate: known once built
                    assert (detail.params_by_bits, detail.compression) == (None, None)
                    assert detail.kind == "Zoo"
                else:
                    assert detail.params_by_bits == totals["params_by_bits"]
                    assert detail.compression == totals["compression"]
        uploaded = [
            (m.name, d.version)
            for m in listing.models
            for d in m.version_details
            if d.weights_uploaded
        ]
        assert uploaded == [("bnn", 1)]

        # The cache is bounded: least recently used first out.
        from bnncore_service.sizes import SizeCache

        with pytest.raises(ValueError, match="Received: size=0"):
            SizeCache(0)
        small = SizeCache(1)
        (mnist,) = [m for m in listing.models if m.name == "mnist"]
        for detail in mnist.version_details:
            sizes = small.sizes(app.state.store, settings, detail.content_hash)
            assert sizes.params_by_bits == detail.params_by_bits
            assert sizes.compression == detail.compression
            assert len(small) == 1


def test_model_list_under_lowered_limits_keeps_the_stored_sizes(tmp_path: Any) -> None:
    from bnncore_service.config import Settings
    from bnncore_service.main import create_app

    data_dir = tmp_path / "data"
    with TestClient(create_app(Settings(data_dir=data_dir))) as client:
        reply = client.post("/v2/models", json={"name": "mnist", "definition": MNIST})
        assert reply.status_code == 201, reply.text
        before = client.get("/v2/models").json()["models"][0]["version_details"][0]
    assert before["params_by_bits"] is not None
    assert before["params"] > 1000  # 288 + 3 × 32 + 13 × 13 × 32 × 10 + 10
    # A replica started with a lower limit still lists it, with the figures
    # stored at registration and no estimate.
    lowered = Settings(data_dir=data_dir, max_params=1000)
    with TestClient(create_app(lowered)) as client:
        reply = client.get("/v2/models")
        assert reply.status_code == 200, reply.text
        (detail,) = reply.json()["models"][0]["version_details"]
    assert (detail["params_by_bits"], detail["compression"]) == (None, None)
    assert {k: detail[k] for k in ("params", "memory_bytes", "version")} == {
        k: before[k] for k in ("params", "memory_bytes", "version")
    }


def test_schema_version_is_the_library_s() -> None:
    from bnncore.analysis.records import SCHEMA_VERSION
    from bnncore_service.schemas.reports import REPORT_SCHEMA_VERSION

    assert REPORT_SCHEMA_VERSION == SCHEMA_VERSION
    assert (
        ProfileReport.model_fields["schema_version"].annotation
        == (typing.Literal[SCHEMA_VERSION])
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["totals"].update(extra=1), "not in schema"),
        (lambda d: d["layers"][0]["weights"][0].pop("path"), "never written"),
    ],
    ids=["extra-key", "missing-key"],
)
def test_key_check_finds_differences(
    reports: dict[str, str], change: Any, expected: str
) -> None:
    document = json.loads(reports["mnist"])
    change(document)
    with pytest.raises(AssertionError, match=expected):
        _check_keys(ProfileReport, document, "mnist")
