"""The binary tensor data extension in the codec (no server): binary inputs
equal JSON inputs, the memory bound counts binary outputs at 4 bytes a value,
the framing's errors; and the scopes of the extensions' routes."""

from __future__ import annotations

import numpy as np
import pytest

from bnncore_service.inference.binary import encode_body, split_body
from bnncore_service.inference.oip import decode_oip, encode_oip_binary
from bnncore_service.inference.schemas import InferenceRequest
from bnncore_service.inference.tensors import DATATYPES, InferenceError, Limits
from bnncore_service.main import required_scope
from bnncore_service.peak import RequestCost

INPUTS = [{"name": "x", "shape": [-1, 2, 3]}]
OUTPUTS = [{"name": "y", "shape": [-1, 10]}, {"name": "z", "shape": [-1, 1]}]
LIMITS = Limits(max_batch=64, max_tensor_elements=10_000)


def _binary_request(array: np.ndarray, datatype: str, **parameters) -> tuple:
    raw = array.astype(DATATYPES[datatype].newbyteorder("<")).tobytes()
    body = InferenceRequest.model_validate(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(array.shape),
                    "datatype": datatype,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            **parameters,
        }
    )
    return body, raw


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_binary_input_equals_json_input(datatype):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4, 2, 3)) * 50).astype(DATATYPES[datatype])
    if datatype.startswith("UINT"):
        x = np.abs(rng.normal(size=(4, 2, 3)) * 50).astype(DATATYPES[datatype])
    body, raw = _binary_request(x, datatype)
    # Off by one byte, as a body slice may be: the reader copes with alignment.
    shifted = memoryview(b"\0" + raw)[1:]
    binary = decode_oip(body, "m", INPUTS, OUTPUTS, LIMITS, shifted)
    as_json = InferenceRequest.model_validate(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": list(x.shape),
                    "datatype": datatype,
                    "data": x.reshape(-1).tolist(),
                }
            ]
        }
    )
    expected = decode_oip(as_json, "m", INPUTS, OUTPUTS, LIMITS)
    (got,), (ref,) = binary.arrays, expected.arrays
    assert got.dtype == np.float32 and got.flags.aligned
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(got, x.astype(np.float32))


@pytest.mark.parametrize(
    ("array", "datatype", "message"),
    [
        (np.array([[[1, 2, 3], [4, 5, np.nan]]]), "FP32", "elements must be finite"),
        (np.full((1, 2, 3), 1e300), "FP64", "beyond the float32 range"),
    ],
    ids=["nan", "fp64 beyond float32"],
)
def test_binary_values_get_the_json_checks(array, datatype, message):
    body, raw = _binary_request(array, datatype)
    with pytest.raises(InferenceError, match=message) as error:
        decode_oip(body, "m", INPUTS, OUTPUTS, LIMITS, raw)
    assert error.value.status == 400


def test_bool_bytes_other_than_0_and_1_are_refused():
    body, raw = _binary_request(np.ones((1, 2, 3), bool), "BOOL")
    with pytest.raises(InferenceError, match="bytes 0 or 1; received 7"):
        decode_oip(body, "m", INPUTS, OUTPUTS, LIMITS, raw[:-1] + b"\7")


def test_memory_bound_counts_binary_outputs_at_4_bytes_a_value():
    # Per row: 100 bytes of model peak + output y (10 values) + z (1 value).
    cost = RequestCost(row_bytes=100, fixed_bytes=0, output_elements=(10, 1))
    # 2 rows: JSON y = 2 × (100 + 280 + 28) = 816; binary y = 2 × (100 + 40 + 28)
    # = 336; the limit between them.
    limits = Limits(64, 10_000, max_request_bytes=500, cost=cost)
    body, raw = _binary_request(np.zeros((2, 2, 3), np.float32), "FP32")
    binary_y = InferenceRequest.model_validate(
        {
            **body.model_dump(exclude_none=True),
            "outputs": [
                {"name": "y", "parameters": {"binary_data": True}},
                {"name": "z"},
            ],
        }
    )
    decoded = decode_oip(binary_y, "m", INPUTS, OUTPUTS, limits, raw)
    assert decoded.binary == frozenset({0}) and decoded.outputs == [0, 1]
    as_json = InferenceRequest.model_validate(
        {
            **body.model_dump(exclude_none=True),
            "outputs": [{"name": "y"}, {"name": "z"}],
        }
    )
    with pytest.raises(InferenceError, match="needs up to 816 bytes") as error:
        decode_oip(as_json, "m", INPUTS, OUTPUTS, limits, raw)
    assert error.value.status == 413
    assert "at most 1 rows fit" in str(error.value)


def test_binary_data_output_applies_to_outputs_that_do_not_say():
    body, raw = _binary_request(np.zeros((1, 2, 3), np.float32), "FP32")
    request = InferenceRequest.model_validate(
        {
            **body.model_dump(exclude_none=True),
            "parameters": {"binary_data_output": True},
            "outputs": [
                {"name": "z"},
                {"name": "y", "parameters": {"binary_data": False}},
            ],
        }
    )
    decoded = decode_oip(request, "m", INPUTS, OUTPUTS, LIMITS, raw)
    assert decoded.outputs == [1, 0] and decoded.binary == frozenset({1})


def test_response_framing_reads_back():
    y = np.arange(20, dtype=np.float32).reshape(2, 10)
    z = np.array([[np.nan], [np.inf]], np.float32)
    encoded, nonfinite, buffers = encode_oip_binary(
        [y, z], [1, 0], OUTPUTS, frozenset({1})
    )
    assert nonfinite == 0  # the binary z carries them; y has none
    payload, length = encode_body({"outputs": encoded}, buffers)
    header, rest = split_body(payload, str(length))
    assert b'"binary_data_size":8' in header and b'"data":[0.0,1.0' in header
    np.testing.assert_array_equal(np.frombuffer(rest, "<f4").reshape(2, 1), z)


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("POST", "/v2/repository/index", "read"),
        ("POST", "/v2/repository/models/m/load", "admin"),
        ("POST", "/v2/repository/models/m/unload", "admin"),
        ("GET", "/v2/models/m/config", "read"),
        ("GET", "/v2/models/m/versions/1/stats", "read"),
        ("GET", "/v2/models/stats", "read"),
    ],
)
def test_extension_routes_need_read_or_admin(method, path, scope):
    assert required_scope(method, path) == scope
