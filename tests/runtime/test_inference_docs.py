"""The inference replica's API documentation works offline, like the full
service's: ``/docs`` and ``/redoc`` load their scripts from the replica itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bnncore_service.config import Settings
from bnncore_service.docs import ASSETS_DIR

pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2")


def test_docs_pages_load_only_files_the_replica_serves(tmp_path: Path) -> None:
    from bnncore_service.inference_app import create_inference_app

    settings = Settings(data_dir=tmp_path / "data", role="inference")
    with TestClient(create_inference_app(settings)) as client:
        for page in ("/docs", "/redoc"):
            reply = client.get(page)
            assert reply.status_code == 200, page
            assert "default-src 'none'" in reply.headers["content-security-policy"]
            sources = re.findall(r'(?:src|href)="([^"]+)"', reply.text)
            assert sources, page
            for url in sources:
                assert url.startswith("/"), (page, url)  # nothing from a CDN
                if not url.endswith(".json"):
                    asset = client.get(url)
                    assert asset.status_code == 200, url
                    served = ASSETS_DIR / url.rsplit("/", 1)[1]
                    assert asset.content == served.read_bytes()
        assert (
            client.get("/openapi.json")
            .json()["info"]["title"]
            .endswith("(inference replica)")
        )


def test_docs_follow_the_key_rule(tmp_path: Path) -> None:
    from bnncore_service.inference_app import create_inference_app

    closed = Settings(
        data_dir=tmp_path / "data",
        role="inference",
        api_keys="r:read",
        public_docs=False,
    )
    with TestClient(create_inference_app(closed)) as client:
        assert client.get("/docs").status_code == 401
        assert (
            client.get("/docs", headers={"Authorization": "Bearer r"}).status_code
            == 200
        )
