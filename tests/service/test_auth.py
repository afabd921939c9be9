"""BNN_API_KEYS (bearer keys with scopes) and BNN_CORS_ORIGINS."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bnncore_service import keyauth
from bnncore_service.auth import parse_api_keys
from bnncore_service.config import Settings
from bnncore_service.main import create_app, required_scope

KEYS = {
    "admin": "adm-0123456789abcdef",
    "read": "rd-0123456789abcdef",
    "infer": "inf-0123456789abcdef",
    "all": "all-0123456789abcdef",
}
API_KEYS = (
    f"{KEYS['admin']}:admin,{KEYS['read']}:read,{KEYS['infer']}:infer,{KEYS['all']}:*"
)
ORIGIN = "https://app.example"
DEFINITION = {
    "name": "tiny",
    "input_shape": [4],
    "layers": [{"type": "Dense", "units": 2}],
}


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("auth") / "data",
        api_keys=API_KEYS,
        cors_origins=[ORIGIN],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_requests_without_a_valid_key_get_401_with_a_challenge(
    client: TestClient,
) -> None:
    for headers, fragment in (
        ({}, "authentication required"),
        ({"Authorization": "Bearer not-a-key"}, "not valid"),
        ({"Authorization": f"Bearer {KEYS['admin']}x"}, "not valid"),
        ({"Authorization": "Bearer "}, "not valid"),
        ({"Authorization": f"Basic {KEYS['all']}"}, "scheme 'Basic'"),
        ({"Authorization": KEYS["all"]}, "allowed: 'Bearer <key>'"),
    ):
        for method, path in (("GET", "/v2"), ("GET", "/v2/models"), ("GET", "/nope")):
            reply = client.request(method, path, headers=headers)
            assert reply.status_code == 401, (headers, path)
            assert reply.headers["www-authenticate"].startswith("Bearer")
            assert fragment in reply.json()["error"]
            # A key sent without its scheme is never echoed, not even in part.
            for key in KEYS.values():
                assert key[:6] not in reply.text
    # A wrong key is refused before the body is read: no 413 for a huge one.
    reply = client.put(
        "/v2/models/m/versions/1/weights",
        content=b"\0" * (5 * 2**20),
        headers={"Authorization": "Bearer wrong"},
    )
    assert reply.status_code == 401
    assert 'error="invalid_token"' in reply.headers["www-authenticate"]


def test_refusals_are_counted_in_the_metrics(client: TestClient) -> None:
    def rejected(reason: str) -> float:
        text = client.get("/metrics", headers=bearer("read")).text
        line = f'bnn_rejections_total{{reason="{reason}"}} '
        found = [x for x in text.splitlines() if x.startswith(line)]
        return float(found[0].split()[-1]) if found else 0.0

    before = rejected("unauthorized"), rejected("forbidden")
    client.get("/v2/models")
    client.get("/v2/models", headers={"Authorization": "Bearer wrong"})
    client.delete("/v2/models/m/versions/9", headers=bearer("read"))
    assert (rejected("unauthorized"), rejected("forbidden")) == (
        before[0] + 2,
        before[1] + 1,
    )
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer("infer")).status_code == 403


def test_health_is_open(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_scopes(client: TestClient) -> None:
    register = {"name": "m", "definition": DEFINITION}
    # read: metadata and dry runs, but not register, upload or delete.
    assert client.get("/v2/models", headers=bearer("read")).status_code == 200
    assert (
        client.post("/v2/estimate", json=DEFINITION, headers=bearer("read")).status_code
        == 200
    )
    compare = {"a": DEFINITION, "b": DEFINITION}
    assert (
        client.post("/v2/compare", json=compare, headers=bearer("read")).status_code
        == 200
    )
    reply = client.post("/v2/models", json=register, headers=bearer("read"))
    assert reply.status_code == 403
    assert reply.json()["error"] == (
        "this API key lacks the 'admin' scope that POST /v2/models requires "
        "(its scopes: read)"
    )
    assert (
        'error="insufficient_scope", scope="admin"'
        in (reply.headers["www-authenticate"])
    )
    # admin: register, upload, delete; scopes are independent (no read).
    assert client.post("/v2/models", json=register, headers=bearer("admin")).status_code
    assert client.get("/v2/models/m", headers=bearer("admin")).status_code == 403
    assert client.get("/v2/models/m", headers=bearer("all")).status_code == 200
    reply = client.put("/v2/models/m/versions/1/weights", headers=bearer("infer"))
    assert reply.status_code == 403 and "'admin' scope" in reply.json()["error"]
    reply = client.put("/v2/models/m/versions/1/weights", headers=bearer("admin"))
    assert reply.status_code == 400  # authorized; the empty body is refused
    # infer: inference routes pass authentication (whatever they answer), and
    # nothing else does.
    for method, path in (
        ("POST", "/v2/models/m/infer"),
        ("POST", "/v2/models/m/versions/1/infer"),
        ("POST", "/v1/models/m:predict"),
        ("GET", "/v2/models/m/ready"),
    ):
        reply = client.request(method, path, json={}, headers=bearer("infer"))
        assert reply.status_code not in (401, 403), (path, reply.text)
        reply = client.request(method, path, json={}, headers=bearer("read"))
        assert reply.status_code == 403, path
    assert client.get("/v2/models", headers=bearer("infer")).status_code == 403
    reply = client.delete("/v2/models/m/versions/1", headers=bearer("all"))
    assert reply.status_code == 200


def test_every_configured_key_is_compared_in_constant_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(keyauth.hmac, "compare_digest", counting)
    for key in (KEYS["admin"], KEYS["all"], "wrong", "x" * 400):
        calls.clear()
        client.get("/v2", headers={"Authorization": f"Bearer {key}"})
        # All four keys, whichever matches (the first, the last or none), and
        # always 32-byte digests: the key's length does not change the work.
        assert calls == [(32, 32)] * 4, key


def test_route_scope_table() -> None:
    assert required_scope("GET", "/v2/health/live") is None
    assert required_scope("GET", "/v2/health/ready") is None
    assert required_scope("GET", "/metrics") == "read"
    assert required_scope("GET", "/docs") == "read"
    assert required_scope("GET", "/openapi.json") == "read"
    assert required_scope("GET", "/v2/models/m/versions/2") == "read"
    assert required_scope("POST", "/v2/summary") == "read"
    assert required_scope("POST", "/v2/models/m/infer") == "infer"
    assert required_scope("POST", "/v1/models/m/versions/3:predict") == "infer"
    assert required_scope("GET", "/v2/models/m/versions/3/ready") == "infer"
    assert required_scope("GET", "/v2/models/m/ready") == "infer"
    # Models named like the endpoints: their metadata is a read.
    assert required_scope("GET", "/v2/models/ready") == "read"
    assert required_scope("GET", "/v2/models/infer") == "read"
    assert required_scope("GET", "/v2/models/infer/versions/1") == "read"
    assert required_scope("POST", "/v2/models/ready/infer") == "infer"
    assert required_scope("DELETE", "/v2/models/infer") == "admin"
    assert required_scope("GET", "/v1/models/m") == "read"
    assert required_scope("POST", "/v2/models") == "admin"
    assert required_scope("PUT", "/v2/models/m/versions/1/weights") == "admin"
    assert required_scope("DELETE", "/v2/models/m/versions/1") == "admin"
    assert required_scope("PATCH", "/v2") == "admin"


def test_key_formats() -> None:
    every = frozenset({"read", "infer", "admin"})
    assert parse_api_keys("a1:read+infer, b2:admin ,c3,d4:*") == {
        "a1": frozenset({"read", "infer"}),
        "b2": frozenset({"admin"}),
        "c3": every,
        "d4": every,
    }
    assert parse_api_keys('{"a1": ["read"], "b:2": "*", "c3": "infer+admin"}') == {
        "a1": frozenset({"read"}),
        "b:2": every,
        "c3": frozenset({"infer", "admin"}),
    }
    assert parse_api_keys(None) == parse_api_keys("  ") == {}
    for text, message in (
        ("secret1:reed", "scopes of key #1: received 'reed'; allowed: read, infer"),
        ("k1,secret2:read,k1", "key #3 is given twice"),
        ('{"k1": 1}', "scopes of key #1: expected a list of scope names or '*'"),
        ('{"k1": "*", "k1": "read"}', "key #2 is given twice"),
        ('{"k1": ', "not valid JSON"),
        ("k1,sec ret", "key #2: keys must be 1 to 512 printable ASCII characters"),
        ("k1,,k2", "key #2: keys must be"),
    ):
        with pytest.raises(ValueError, match="BNN_API_KEYS") as caught:
            parse_api_keys(text)
        assert message in str(caught.value)
        assert "secret" not in str(caught.value)  # keys are never echoed


def test_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BNN_API_KEYS", "k-one:read,k-two")
    monkeypatch.setenv("BNN_CORS_ORIGINS", f"{ORIGIN}, https://other.example")
    settings = Settings()
    assert settings.api_key_scopes() == {
        "k-one": frozenset({"read"}),
        "k-two": frozenset({"read", "infer", "admin"}),
    }
    assert "k-one" not in repr(settings)
    assert settings.cors_origins == [ORIGIN, "https://other.example"]
    monkeypatch.setenv("BNN_CORS_ORIGINS", '["https://json.example"]')
    assert Settings().cors_origins == ["https://json.example"]
    monkeypatch.setenv("BNN_API_KEYS", "k-one:writer")
    with pytest.raises(ValueError, match="received 'writer'"):
        create_app(Settings(data_dir=tmp_path))  # a bad value stops the start


def test_without_keys_or_origins_the_service_is_open_and_sends_no_cors(
    tmp_path: Path,
) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path, api_keys="  "))) as open_:
        reply = open_.get("/v2/models", headers={"Origin": ORIGIN})
        assert reply.status_code == 200
        assert "access-control-allow-origin" not in reply.headers
        reply = open_.get("/v2/models", headers={"Authorization": "Bearer whatever"})
        assert reply.status_code == 200


def test_cors_preflight_and_headers(client: TestClient) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    # The preflight needs no key.
    reply = client.options("/v2/models/m/versions/1/weights", headers=preflight)
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "PUT" in reply.headers["access-control-allow-methods"]
    allowed = reply.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    # A browser client of the binary tensor data extension sends its header.
    binary = dict(
        preflight,
        **{
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "inference-header-content-length",
        },
    )
    reply = client.options("/v2/models/m/infer", headers=binary)
    assert reply.status_code == 200
    allowed = reply.headers["access-control-allow-headers"].lower()
    assert "inference-header-content-length" in allowed
    reply = client.options(
        "/v2/models", headers=dict(preflight, Origin="https://evil.example")
    )
    assert reply.status_code == 400
    assert "access-control-allow-origin" not in reply.headers
    # Actual responses, errors included, carry the header for the allowed origin.
    reply = client.get("/v2/models", headers={"Origin": ORIGIN} | bearer("read"))
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    reply = client.get("/v2/models", headers={"Origin": ORIGIN})
    assert reply.status_code == 401
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    reply = client.get("/v2/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in reply.headers
