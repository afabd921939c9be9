"""The pydantic-free reader of TF Serving ``:predict`` bodies
(``tfserving.parse_predict``): for every body, the route's rule ``parse_predict(raw)
or pydantic`` decodes exactly as pydantic's validation alone does (the same
arrays bit for bit, or the same refusal word for word); ordinary bodies take
the reader, and it declines what pydantic must name.

The oracle is the route's pydantic path (``PredictRequest.model_validate_json``
and the duplicate-key check), which the existing inference tests pin down.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnncore_service.inference.handlers import parse_body
from bnncore_service.inference.schemas import PredictRequest
from bnncore_service.inference.tensors import InferenceError, Limits
from bnncore_service.inference.tfserving import (
    PREDICT_KEYS,
    PredictBody,
    decode_tfs,
    parse_predict,
)

ONE = [{"name": "x", "shape": [-1, 2]}]
TWO = [{"name": "x", "shape": [-1, 2]}, {"name": "y", "shape": [-1, 1]}]
LIMITS = Limits(max_batch=64, max_tensor_elements=100_000)


def _outcome(
    raw: bytes, inputs: list[dict[str, Any]], body: PredictBody | None
) -> tuple[Any, ...]:
    """What decoding ``raw`` gives: the refusal, or the decoded batch."""
    try:
        request = parse_body(raw, PredictRequest) if body is None else body
        decoded, rows_format = decode_tfs(request, "m", inputs, LIMITS)
    except InferenceError as error:
        return ("refused", error.status, str(error))
    arrays = [(a.dtype.str, a.shape, a.tobytes()) for a in decoded.arrays]
    return ("ok", arrays, decoded.rows, rows_format)


def _both(raw: bytes, inputs: list[dict[str, Any]] = ONE) -> tuple[Any, ...]:
    """The outcome of the route's rule, checked against pydantic alone."""
    fast = parse_predict(raw)
    got = _outcome(raw, inputs, fast)
    assert got == _outcome(raw, inputs, None)
    return fast, got


def test_the_bodys_fields_are_the_request_models() -> None:
    """The plain body has exactly ``PredictRequest``'s fields and defaults,
    and the reader accepts exactly those keys."""
    fields = {field.name: field for field in dataclasses.fields(PredictBody)}
    assert fields.keys() == PredictRequest.model_fields.keys() == PREDICT_KEYS
    for name, info in PredictRequest.model_fields.items():
        assert not info.is_required()
        assert fields[name].default == info.default, name


TAKEN = {
    "rows": {"instances": [[1.5, -2], [3, 4e-3]]},
    "rows, signature": {"signature_name": "serving_default", "instances": [[1, 2]]},
    "named rows": {"instances": [{"x": [1, 2], "y": [3]}]},
    "columns": {"inputs": [[1, 2], [3, 4]]},
    "named columns": {"inputs": {"x": [[1, 2]], "y": [[0.5]]}},
    "nulls": {"signature_name": None, "instances": None, "inputs": [[1, 2]]},
    "both": {"instances": [[1, 2]], "inputs": [[1, 2]]},
    "neither": {},
    "other signature": {"signature_name": "predict", "instances": [[1, 2]]},
    "longest signature": {"signature_name": "é" * 256, "instances": [[1, 2]]},
    "empty rows": {"instances": []},
    "wrong shape": {"instances": [[1, 2, 3]]},
    "strings": {"instances": [["a", "b"]]},
    "escaped string": {"instances": [["\u00e9\n", "\\"]]},
}


@pytest.mark.parametrize("body", TAKEN.values(), ids=TAKEN.keys())
@pytest.mark.parametrize("inputs", [ONE, TWO], ids=["one input", "two inputs"])
def test_ordinary_bodies_take_the_reader_and_decode_as_pydantic(
    body: Any, inputs: list[dict[str, Any]]
) -> None:
    fast, _ = _both(json.dumps(body).encode(), inputs)
    assert fast is not None


RAW_TAKEN = {
    "NaN and infinities": b'{"instances": [[NaN, Infinity], [-Infinity, 1e400]]}',
    "integer beyond 64 bits": b'{"instances": [[18446744073709551616, 1]]}',
    "large integer": b'{"inputs": [[9223372036854775807, -9223372036854775808]]}',
    "spaces around": b' \n{"instances": [[1, 2]]}\t ',
}


@pytest.mark.parametrize("raw", RAW_TAKEN.values(), ids=RAW_TAKEN.keys())
def test_numbers_read_as_pydantic_reads_them(raw: bytes) -> None:
    fast, _ = _both(raw)
    assert fast is not None


DECLINED = {
    "duplicate key": b'{"instances": [[1, 2]], "instances": [[3, 4]]}',
    "duplicate key inside": b'{"inputs": {"x": [[1, 2]], "x": [[3, 4]]}}',
    "unknown key": b'{"instances": [[1, 2]], "signature": "a"}',
    "signature too long": json.dumps(
        {"signature_name": "a" * 257, "instances": [[1, 2]]}
    ).encode(),
    "signature a number": b'{"signature_name": 1, "instances": [[1, 2]]}',
    "instances an object": b'{"instances": {"x": [1, 2]}}',
    "instances a number": b'{"instances": 3}',
    "a list": b"[[1, 2]]",
    "not JSON": b'{"instances": [[1, 2]',
    "byte order mark": b'\xef\xbb\xbf{"instances": [[1, 2]]}',
    "lone surrogate": b'{"instances": [["\\ud800", 1]]}',
    "not UTF-8": b'{"instances": [["\xff", 1]]}',
    "empty": b"",
}


@pytest.mark.parametrize("raw", DECLINED.values(), ids=DECLINED.keys())
def test_what_pydantic_must_name_is_declined(raw: bytes) -> None:
    fast, outcome = _both(raw)
    assert fast is None
    assert outcome[0] == "refused"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["x", "y", "z"]), inner, max_size=3)
    ),
    max_leaves=12,
)
BODIES = st.dictionaries(
    st.sampled_from(["signature_name", "instances", "inputs", "other"]),
    JSON | st.sampled_from(["serving_default"]),
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES, inputs=st.sampled_from([ONE, TWO]))
def test_generated_bodies_decode_as_pydantic(
    body: dict[str, Any], inputs: list[dict[str, Any]]
) -> None:
    _both(json.dumps(body).encode(), inputs)
