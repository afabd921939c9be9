"""Weights uploads that try to make the service hold what they send
(issue 14, finding 5), in process: the checks before the body, the cap while
it streams, and the header-first check of the received file.

The real-server cases (a 250 MB declared body answered at once, the
concurrent-upload cap, peak RSS) are in ``test_hostile_resources.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from fastapi.testclient import TestClient

from bnncore import export
from bnncore_service.config import Settings
from bnncore_service.main import create_app
from bnncore_service.weights import check, check_file, max_file_bytes

OCTETS = {"content-type": "application/octet-stream"}
URL = "/v2/models/dense/versions/1/weights"
DEFINITION = {
    "input_shape": [8],
    "layers": [{"type": "Dense", "units": 4, "name": "d"}],
}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", max_weights_bytes=64 * 2**20)
    with TestClient(create_app(settings)) as test_client:
        reply = test_client.post(
            "/v2/models", json={"name": "dense", "definition": DEFINITION}
        )
        assert reply.status_code == 201, reply.text
        yield test_client


def _leftovers(client: TestClient) -> list[Path]:
    root = client.app.state.store.data_dir / "weights"  # type: ignore[attr-defined]
    return [p for p in root.rglob("*") if p.is_file()]


def test_upload_cap_is_the_models_size_not_only_the_setting() -> None:
    # 4 bytes a value, 10^6 values of extra tensors, an 8 MiB header, 8 bytes.
    assert max_file_bytes(36, 2**40) == 4 * (36 + 1_000_000) + 8 * 2**20 + 8
    assert max_file_bytes(10**9, 256 * 2**20) == 256 * 2**20


def test_upload_chunked_body_over_the_cap_is_cut_off_and_leaves_nothing(
    client: TestClient,
) -> None:
    cap = max_file_bytes(36, 64 * 2**20)  # the model has 8 x 4 + 4 params
    sent = 0

    def body() -> Iterator[bytes]:  # no Content-Length: chunked
        nonlocal sent
        while sent < cap + 4 * 2**20:
            sent += 2**20
            yield b"\0" * 2**20

    reply = client.put(URL, content=body(), headers=OCTETS)
    assert reply.status_code == 413, reply.text
    assert f"more than {cap:,} bytes" in reply.json()["error"]  # while streaming
    assert f"limit of {cap:,} bytes" in reply.json()["error"]
    assert "36 params" in reply.json()["error"]
    assert _leftovers(client) == []
    assert client.get("/v2/models/dense/versions/1").json()["weights"] == "initial"


def test_upload_refusals_before_the_body_leave_no_file(client: TestClient) -> None:
    for url, headers, status in [
        ("/v2/models/nobody/versions/1/weights", OCTETS, 404),
        ("/v2/models/dense/versions/2/weights", OCTETS, 404),
        (URL, {"content-type": "multipart/form-data; boundary=x"}, 415),
    ]:
        reply = client.put(url, content=b"\0" * 1000, headers=headers)
        assert reply.status_code == status, (url, reply.text)
    assert _leftovers(client) == []


def test_upload_plain_file_not_fitting_is_refused_from_its_header(
    client: TestClient, tmp_path: Path
) -> None:
    """The header-first check says what the full check says (the oracle:
    ``bnncore.export.mismatches`` on the decoded arrays)."""
    cache = client.app.state.runtime.cache  # type: ignore[attr-defined]
    keys = cache.keys()  # the version's model, built by its registration
    (built,) = [cache.get(key) for key in keys]
    arrays = {
        "d/kernel": np.ones((8, 3), np.float32),  # wrong shape
        "d/extra": np.ones(5, np.float32),  # not in the model
    }  # d/bias missing
    path = tmp_path / "w.safetensors"
    safetensors.numpy.save_file(arrays, str(path))
    expected = export.mismatches(built.model, arrays)
    assert len(expected) == 3
    with pytest.raises(ValueError) as from_file:
        check_file(built.model, path, 2**30)
    with pytest.raises(ValueError) as from_bytes:
        check(built.model, path.read_bytes(), 2**30)
    assert from_file.value.differences == expected  # type: ignore[attr-defined]
    assert from_bytes.value.differences == expected  # type: ignore[attr-defined]
    reply = client.put(URL, content=path.read_bytes(), headers=OCTETS)
    assert reply.status_code == 422
    assert reply.json()["differences"] == expected
    assert _leftovers(client) == []


def test_upload_valid_plain_file_is_renamed_into_place(
    client: TestClient, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "d/kernel": rng.standard_normal((8, 4)).astype(np.float32),
        "d/bias": rng.standard_normal(4).astype(np.float32),
    }
    data = safetensors.numpy.save(arrays)  # no __metadata__
    reply = client.put(URL, content=data, headers=OCTETS)
    assert reply.status_code == 201, reply.text
    digest = hashlib.sha256(data).hexdigest()
    assert reply.json()["sha256"] == digest
    files = _leftovers(client)
    assert [p.name for p in files] == [f"{digest}.safetensors"]
    assert files[0].read_bytes() == data
    x = rng.standard_normal((2, 8)).astype(np.float32)
    served = client.post(
        "/v2/models/dense/versions/1/infer",
        json={
            "inputs": [
                {"name": "input", "shape": [2, 8], "datatype": "FP32",
                 "data": x.ravel().tolist()}
            ]
        },
    )  # fmt: skip
    assert served.status_code == 200, served.text
    output = np.array(served.json()["outputs"][0]["data"], np.float32).reshape(2, 4)
    np.testing.assert_allclose(
        output, x @ arrays["d/kernel"] + arrays["d/bias"], rtol=1e-5, atol=1e-5
    )


def test_upload_refused_before_its_body_closes_the_connection(tmp_path: Path) -> None:
    """A refusal sent before the body was read says ``Connection: close`` (the
    server then closes instead of reading the rest): unknown version, no key,
    a key without the admin scope, a declared length over the setting."""
    settings = Settings(
        data_dir=tmp_path / "data",
        api_keys="admin-key:admin,reader:read",
        max_weights_bytes=2**20,
    )
    admin = {"authorization": "Bearer admin-key", **OCTETS}
    with TestClient(create_app(settings)) as test_client:
        for headers, url, status, content in [
            (admin, "/v2/models/nobody/versions/1/weights", 404, b"\0" * 100),
            (OCTETS, URL, 401, b"\0" * 100),
            ({"authorization": "Bearer reader", **OCTETS}, URL, 403, b"\0" * 100),
            (admin, URL, 413, b"\0" * (2**20 + 1)),
        ]:
            reply = test_client.put(url, content=content, headers=headers)
            assert reply.status_code == status, reply.text
            assert reply.headers.get("connection") == "close", status
        # A reply after the whole body was read keeps the connection.
        test_client.post(
            "/v2/models",
            json={"name": "dense", "definition": DEFINITION},
            headers={"authorization": "Bearer admin-key"},
        )
        reply = test_client.put(URL, content=b"\x07" * 100, headers=admin)
        assert reply.status_code == 400
        assert reply.headers.get("connection") != "close"
