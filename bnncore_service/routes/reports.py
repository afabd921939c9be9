"""Reports: a definition's estimate or report (dry runs, nothing stored), and
the comparison of two models (two definitions, or two registered versions)."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, TypeAdapter

from bnncore_service.auth import READ
from bnncore_service.builder import Plan, plan
from bnncore_service.deps import SettingsDep
from bnncore_service.jsonbody import (
    StrictDefinitionRoute,
    StrictJSONRoute,
    documented_as,
    run_validation,
    validate_off_loop,
)
from bnncore_service.keras_json import check_shapes
from bnncore_service.registry_deps import RegistryDep
from bnncore_service.schemas.definitions import Definition
from bnncore_service.schemas.errors import ERROR_RESPONSES
from bnncore_service.schemas.reports import (
    ComparisonReport,
    EstimateReport,
    ProfileReport,
)

__all__ = [
    "REPORT_RESPONSES",
    "CompareRequest",
    "ReportFormatQuery",
    "checked_plan",
    "render_response",
    "router",
]

# The body is parsed (strict JSON) and validated in a worker thread, never on
# the event loop (bnncore_service/jsonbody.py); OpenAPI still documents a Definition.
router = APIRouter(prefix="/v2", tags=["reports"], route_class=StrictDefinitionRoute)

DefinitionBody = Annotated[Any, Body(), documented_as(Definition)]
_definition_adapter: TypeAdapter[Any] = TypeAdapter(cast(Any, Definition))

MEDIA_TYPES = {
    "json": "application/json",
    "text": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
}

ReportFormatQuery = Annotated[
    str,
    Query(
        pattern="^(json|text|csv|markdown|html)$",
        description="Report format: json, text, csv, markdown or html (a "
        "self-contained page with charts)",
    ),
]

# The HTML report loads nothing: its CSS and script are inline. The policy
# makes the browser refuse anything else (a name cannot smuggle a request in).
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
}

REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ProfileReport,
        "description": "The report of bnncore.models.profile in the chosen "
        "format; as JSON, a ProfileReport",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
            "text/markdown": {"schema": {"type": "string"}},
            "text/html": {"schema": {"type": "string"}},
        },
    },
    **ERROR_RESPONSES,
}


def checked_plan(definition: Any, settings: Any) -> Plan:
    """:func:`bnncore_service.builder.plan`, then the shapes a Keras JSON definition
    states (``build_config``, tensor references) checked against the
    estimate's."""
    model_plan = plan(definition, settings)
    check_shapes(definition, model_plan.estimate)
    return model_plan


async def definition_plan(request: Request, body: Any, settings: Any) -> Plan:
    """A dry run's body validated and planned in a validation thread."""
    definition = await validate_off_loop(request, _definition_adapter, body)
    return await run_validation(request, checked_plan, definition, settings)


def render_response(profile: Any, format: str) -> Response:
    """The profile rendered by ``bnncore.analysis.render`` as an HTTP response."""
    from bnncore.analysis import render

    headers = HTML_HEADERS if format == "html" else None
    return Response(
        render(profile, format=format),
        media_type=MEDIA_TYPES[format],
        headers=headers,
    )


@router.post(
    "/summary",
    dependencies=[READ],
    response_class=Response,
    responses=REPORT_RESPONSES,
    summary="Dry run: the report of a definition (nothing stored)",
)
async def summary(
    request: Request,
    definition: DefinitionBody,
    settings: SettingsDep,
    registry: RegistryDep,
    format: ReportFormatQuery = "json",
) -> Response:
    """Validates, estimates (refusing anything over the limits), builds and
    profiles the definition, and returns its report."""
    model_plan = await definition_plan(request, definition, settings)
    built = await registry.build(model_plan)
    return render_response(built.profile, format)


def _estimate_response(model_plan: Plan) -> Response:
    """The estimate as a JSON response, made and serialized in a worker thread
    (a large model's estimate is milliseconds of work, not for the loop)."""
    from bnncore_service.estimate import DefinitionError, estimate_report

    if model_plan.estimate is None:
        raise DefinitionError(
            "definition.zoo: zoo models have no analytic estimate; use /v2/summary"
        )
    report = estimate_report(model_plan.estimate, model_plan.definition.graph())
    return Response(report.model_dump_json(), media_type="application/json")


@router.post(
    "/estimate",
    dependencies=[READ],
    response_model=EstimateReport,
    responses=ERROR_RESPONSES,
    summary="The analytic estimate of a definition, without building it",
)
async def estimate(
    request: Request, definition: DefinitionBody, settings: SettingsDep
) -> Response:
    """Parameters, memory, MACs and activation elements computed from the
    definition alone, in the shape of the report (``/v2/summary``) with what
    only the built model can tell null (not available for zoo definitions:
    422)."""
    model_plan = await definition_plan(request, definition, settings)
    return await run_validation(request, _estimate_response, model_plan)


# ----------------------------------------------------------------------------
# Compare two models
# ----------------------------------------------------------------------------

COMPARE_MEDIA_TYPES = {k: MEDIA_TYPES[k] for k in ("json", "text", "html")}

CompareFormatQuery = Annotated[
    str,
    Query(
        pattern="^(json|text|html)$",
        description="Comparison format: json, text or html",
    ),
]
ModelRef = Annotated[
    str,
    Query(
        pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}(:[1-9][0-9]{0,9})?$",
        description="A registered model: NAME (its latest version) or NAME:VERSION",
    ),
]

COMPARE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ComparisonReport,
        "description": "bnncore.analysis.compare(a, b): total and per-layer "
        "deltas (b - a), layers matched by name, unmatched layers listed",
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "text/html": {"schema": {"type": "string"}},
        },
    },
    **ERROR_RESPONSES,
}


class CompareRequest(BaseModel):
    """Two definitions to compare (nothing is stored)."""

    model_config = ConfigDict(extra="forbid")

    a: Definition
    b: Definition


_compare_adapter: TypeAdapter[CompareRequest] = TypeAdapter(CompareRequest)
CompareBody = Annotated[Any, Body(), documented_as(CompareRequest)]


def _plan_pair(request: CompareRequest, settings: Any) -> tuple[Plan, Plan]:
    return checked_plan(request.a, settings), checked_plan(request.b, settings)


def compare_response(a: Any, b: Any, format: str) -> Response:
    """``bnncore.analysis.compare`` of two profiles as an HTTP response."""
    from bnncore.analysis import compare, render_comparison

    text = render_comparison(compare(a, b), format=format)
    headers = HTML_HEADERS if format == "html" else None
    return Response(text, media_type=COMPARE_MEDIA_TYPES[format], headers=headers)


async def compare_definitions(
    request: Request,
    body: CompareBody,
    settings: SettingsDep,
    registry: RegistryDep,
    format: CompareFormatQuery = "json",
) -> Response:
    """Validates, estimates and builds both definitions (each within the
    limits, as a dry run), and compares ``b`` with ``a``."""
    pair = await validate_off_loop(request, _compare_adapter, body)
    plan_a, plan_b = await run_validation(request, _plan_pair, pair, settings)
    built_a = await registry.build(plan_a)
    built_b = await registry.build(plan_b)
    return compare_response(built_a.profile, built_b.profile, format)


# A body of two definitions: plain strict JSON (error paths start at "body").
router.add_api_route(
    "/compare",
    compare_definitions,
    methods=["POST"],
    dependencies=[READ],
    response_class=Response,
    responses=COMPARE_RESPONSES,
    summary="Dry run: compare two definitions (nothing stored)",
    route_class_override=StrictJSONRoute,
)


@router.get(
    "/compare",
    dependencies=[READ],
    response_class=Response,
    responses=COMPARE_RESPONSES,
    summary="Compare two registered models (NAME or NAME:VERSION)",
)
async def compare_registered(
    a: ModelRef,
    b: ModelRef,
    registry: RegistryDep,
    format: CompareFormatQuery = "json",
) -> Response:
    """The comparison of model ``b`` with model ``a``, both registered."""
    profiles = []
    for ref in (a, b):
        name, _, version = ref.partition(":")
        profiles.append(await registry.profile(name, int(version) if version else None))
    return compare_response(profiles[0], profiles[1], format)
