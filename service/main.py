"""``service.main:app``, kept for uvicorn command lines written before 0.2."""

from bnncore_service.main import app, create_app

__all__ = ["app", "create_app"]
