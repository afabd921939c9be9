"""Service configuration: one settings class read from ``BNN_*`` environment variables.

Every field can be set as an environment variable with the ``BNN_`` prefix, e.g.
``BNN_DATA_DIR=/var/lib/bnn`` or ``BNN_MAX_PARAMS=50000000``. With no variables
set the service runs on the embedded default: SQLite metadata and files under
``./data``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_args

import annotated_types
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bnncore_service import settings_rules
from bnncore_service.blobs import S3_URL, S3_URL_FORM
from bnncore_service.settings_rules import SettingsError

if TYPE_CHECKING:
    from bnncore_service.preload import PreloadTarget

__all__ = ["Settings", "SettingsError", "fields_module", "load_settings"]


class Settings(BaseSettings):
    """Configuration of the service (environment variables ``BNN_<FIELD>``).

    Attributes:
        data_dir: Directory holding the SQLite database (by default) and the
            stored definitions; created on first start.
        database_url: SQLAlchemy URL of the metadata database, e.g.
            ``postgresql+psycopg://user:pass@host/db``. Default: SQLite file
            ``<data_dir>/registry.sqlite3``. PostgreSQL needs the
            ``postgres`` extra (``pip install 'bnncore[postgres]'``).
        object_store_url: ``BNN_OBJECT_STORE_URL``: ``s3://bucket/prefix``
            keeps the definition and weights files in an S3-compatible
            object store (``bnncore_service/blobs.py``; endpoint, region and
            credentials from the standard ``AWS_*`` variables; needs the
            ``s3`` extra, ``pip install 'bnncore[s3]'``). Unset or empty:
            files under ``data_dir``.
        migrate: ``BNN_MIGRATE``: ``auto`` brings the registry database to
            the newest schema at start-up (Alembic, ``bnncore_service/migrations``);
            ``off`` only checks it is there and refuses to start otherwise
            (run ``bnncore db upgrade`` first).
        registry_poll_s: ``BNN_REGISTRY_POLL_S``: inference reuses the
            versions and weights it looked up until the registry's generation
            counter changes; it reads the counter at most this often
            (seconds), so a change made through another replica is served
            here at most this long after its commit (0: read it for every
            request).
        max_layers: Most layers a definition may have.
        max_units: Largest ``units`` of a dense layer.
        max_filters: Largest ``filters`` of a convolution (and largest
            ``filters * depth_multiplier`` channel count of a depthwise layer).
        max_kernel_size: Largest kernel, pool or stride extent along one axis.
        max_dimension: Largest extent of one axis of a model input (an
            ``Input`` layer's shape, a zoo model's ``input_shape``). The width
            of a layer is bounded by ``max_units`` and ``max_filters``, the
            size of every other tensor (a ``Flatten`` output, say) by
            ``max_activation_elements``.
        max_params: Most parameters a model may have (Keras count).
        max_activation_elements: Most output elements summed over all layers,
            at batch size 1.
        max_body_bytes: Largest request body accepted (413 beyond).
        model_cache_size: Built models kept per process (least recently used
            evicted).
        build_workers: Threads building models (TensorFlow work).
        max_pending_builds: Builds queued or running at once; beyond, 503.
        max_weights_bytes: Largest weights file accepted by
            ``PUT .../weights`` (413 beyond); the only route allowed more
            than ``max_body_bytes``.
        api_keys: ``BNN_API_KEYS``: API keys and their scopes, compact
            (``key1:read+infer,key2:admin,key3``) or JSON
            (``{"key1": ["read", "infer"]}``); unset or blank: no
            authentication. See ``bnncore_service/auth.py`` and docs/deployment.md.
        public_docs: ``BNN_PUBLIC_DOCS``: serve the API documentation
            (``/docs``, ``/redoc``, ``/openapi.json``) without a key even when
            ``api_keys`` is set, so that Swagger UI's Authorize button can be
            used; ``false``: those need a ``read`` key like other reads.
        cors_origins: ``BNN_CORS_ORIGINS``: origins allowed by CORS,
            comma-separated or a JSON list (``*``: any); empty: no CORS headers.
        max_batch: Largest batch (first dimension) of an inference request (413
            beyond).
        max_tensor_elements: Most input elements of one inference request,
            summed over its inputs (413 beyond); checked on the declared shapes
            before the data is converted.
        max_request_bytes: ``BNN_MAX_REQUEST_BYTES``: most memory one
            inference request may take: batch × the model's per-row peak
            (every tensor live at once, intermediates included, see
            ``bnncore_service/peak.py``) plus batch-independent temporaries plus the
            encoded response (28 bytes per JSON value); 413 before any work
            beyond, and a merged dynamic batch never exceeds it. A model that
            cannot serve one row within it is refused at registration (413).
            Default 1 GiB: with the default 2 ``inference_workers`` requests
            hold at most about 2 GiB at once, which leaves room for the model
            cache in a 4–6 GB container, while a full batch
            (``max_batch`` = 256 rows) of a model with a 4 MB per-row peak
            still fits.
        inference_workers: Model executions running at once (threads).
        workers: ``BNN_WORKERS``: server processes of ``python -m
            bnncore_service`` sharing its port, each with its own model
            cache and connection limits (docs/inference.md, "Workers and
            threads").
        max_pending_inferences: Executions running or queued; beyond, 503 at
            once.
        inference_timeout_s: Longest wait for an inference result (504 after).
        engine: ``auto`` runs models on the packed engine when they qualify;
            ``keras`` always uses TensorFlow (requests may still ask for either).
        role: ``BNN_ROLE``: ``full`` serves everything (registration,
            reports, weight uploads, inference with TensorFlow and the packed
            engine); ``inference`` serves only inference and metadata of the
            registered models, on ``bnncore_runtime`` without TensorFlow
            (``python -m bnncore_service`` then runs
            ``bnncore_service.inference_app``); a model
            it cannot run is refused with 501 naming the reason, for a full
            replica to serve (docs/deployment.md, docs/runtime.md).
        batching: Dynamic batching of concurrent small requests per model
            (a request that finds its model idle runs at once, so batching
            only merges requests that would otherwise queue). Off by
            default: measured on 2 cores it does not pay while the HTTP
            path costs more than the model (docs/inference.md, "Dynamic
            batching").
        batch_max_size: Rows of a merged batch (dynamic batching).
        batch_max_wait_ms: Longest wait for companions (dynamic batching):
            requests that arrive while their model runs wait for it to end,
            at most this long.
        max_concurrent_uploads: ``BNN_MAX_CONCURRENT_UPLOADS``: weights
            uploads receiving or being checked at once; beyond, 503 with
            ``Retry-After`` before the body is read.
        sweep_grace_s: ``BNN_SWEEP_GRACE_S``: at start-up, temporary files and
            files no committed version refers to are deleted once they are
            older than this (seconds), so that a file another replica is
            writing right now is left alone.
        max_header_bytes: ``BNN_MAX_HEADER_BYTES``: largest request head
            (request line and headers) the server reads (``python -m
            service``; 431 or 400 beyond, connection closed).
        max_connections: ``BNN_MAX_CONNECTIONS``: connections open at once
            (``python -m bnncore_service``); a new one beyond closes the connection
            waiting longest for its request head, or, if every connection
            has a request in progress, gets 503.
        keep_alive_s: ``BNN_KEEP_ALIVE_S``: idle keep-alive connections are
            closed after this (``python -m bnncore_service``).
        header_timeout_s: ``BNN_HEADER_TIMEOUT_S``: a connection that has not
            sent a complete request head this long after connecting, or after
            its previous response, is closed (``python -m bnncore_service``).
        max_definition_keys: ``BNN_MAX_DEFINITION_KEYS``: most object keys in
            the JSON body of a definition route (``POST /v2/models``,
            ``/v2/summary``, ``/v2/estimate``), counted from the body's bytes
            before it is parsed (422 beyond). A ``keras.applications``
            model's ``to_json()`` has about 45 keys per layer (NASNetMobile:
            771 layers, 32,000 keys), so the default leaves room for
            ``max_layers`` such layers twice over.
        max_json_depth: ``BNN_MAX_JSON_DEPTH``: deepest nesting of objects
            and arrays in such a body (422 beyond; Keras JSON needs 12).
        validation_workers: ``BNN_VALIDATION_WORKERS``: threads parsing and
            validating request bodies (off the event loop); further requests
            wait for one.
        log_format: ``BNN_LOG_FORMAT``: ``text`` (a readable line with
            ``key=value`` fields) or ``json`` (one JSON object per line), on
            stdout; see ``bnncore_service/logs.py`` and docs/deployment.md.
        log_level: ``BNN_LOG_LEVEL``: ``debug`` (adds a line per successful
            request), ``info``, ``warning`` or ``error``.
        slow_request_ms: ``BNN_SLOW_REQUEST_MS``: a request answered after
            longer than this (milliseconds) is logged as ``slow_request``.
        preload: ``BNN_PRELOAD``: models to load at start-up,
            ``name[:version]`` separated by commas (no version: the latest
            when loaded), e.g. ``mnist,quicknet:3``; ``/v2/health/ready`` is
            503 with the reason until every one is loaded
            (``bnncore_service/preload.py``).
            Empty: nothing is preloaded.
        preload_retry_s: ``BNN_PRELOAD_RETRY_S``: seconds between attempts
            for a preloaded model that failed to load (not registered yet,
            say); the replica stays not ready meanwhile.
    """

    model_config = SettingsConfigDict(env_prefix="BNN_", extra="ignore")

    data_dir: Path = Path("data")
    database_url: str | None = None
    object_store_url: str | None = Field(default=None, pattern=f"^({S3_URL.pattern})?$")
    migrate: str = Field(default="auto", pattern="^(auto|off)$")
    registry_poll_s: float = Field(default=1.0, ge=0, le=3600)
    max_layers: int = Field(default=1024, ge=1)
    max_units: int = Field(default=65_536, ge=1)
    max_filters: int = Field(default=8_192, ge=1)
    max_kernel_size: int = Field(default=64, ge=1)
    max_dimension: int = Field(default=16_384, ge=1)
    max_params: int = Field(default=100_000_000, ge=1)
    max_activation_elements: int = Field(default=200_000_000, ge=1)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    model_cache_size: int = Field(default=8, ge=1)
    build_workers: int = Field(default=2, ge=1)
    max_pending_builds: int = Field(default=16, ge=1)
    max_weights_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    api_keys: SecretStr | None = Field(default=None, repr=False)
    public_docs: bool = True
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_batch: int = Field(default=256, ge=1)
    max_tensor_elements: int = Field(default=4_000_000, ge=1)
    max_request_bytes: int = Field(default=1024**3, ge=1024 * 1024)
    inference_workers: int = Field(default=2, ge=1)
    workers: int = Field(default=1, ge=1, le=64)
    max_pending_inferences: int = Field(default=32, ge=1)
    inference_timeout_s: float = Field(default=30.0, gt=0)
    engine: str = Field(default="auto", pattern="^(auto|keras)$")
    role: str = Field(default="full", pattern="^(full|inference)$")
    batching: bool = False
    batch_max_size: int = Field(default=8, ge=1, le=4096)
    batch_max_wait_ms: float = Field(default=1.0, ge=0, le=10_000)
    max_concurrent_uploads: int = Field(default=2, ge=1)
    sweep_grace_s: float = Field(default=3600.0, ge=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_connections: int = Field(default=1000, ge=1)
    keep_alive_s: float = Field(default=5.0, gt=0)
    header_timeout_s: float = Field(default=10.0, gt=0)
    max_definition_keys: int = Field(default=100_000, ge=100)
    max_json_depth: int = Field(default=32, ge=4, le=256)
    validation_workers: int = Field(default=2, ge=1)
    log_format: str = Field(default="text", pattern="^(text|json)$")
    log_level: str = Field(
        default="info", pattern="^(?i:debug|info|warning|error|critical)$"
    )
    slow_request_ms: float = Field(default=1000.0, gt=0)
    preload: str = ""
    preload_retry_s: float = Field(default=5.0, gt=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        return settings_rules.split_origins(value)

    @field_validator("preload")
    @classmethod
    def _check_preload(cls, value: str) -> str:
        return settings_rules.normalise_preload(value)

    def preload_targets(self) -> tuple[PreloadTarget, ...]:
        """``BNN_PRELOAD`` parsed: the models to load at start-up."""
        return settings_rules.preload_targets(self.preload)

    def api_key_scopes(self) -> dict[str, frozenset[str]]:
        """``BNN_API_KEYS`` parsed: key → scopes (empty: no authentication).

        Raises:
            ValueError: a malformed entry, named by position (never by the key;
                ``create_app`` calls this, so a bad value stops the start).
        """
        return settings_rules.api_key_scopes(self.api_keys)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside :attr:`data_dir`."""
        return settings_rules.resolved_database_url(self.database_url, self.data_dir)


_FORMS: dict[Any, str] = {
    int: "an integer",
    float: "a number",
    bool: "true or false (also 1/0, yes/no, on/off)",
    Path: "a directory path",
    str: "a string",
    SecretStr: "see docs/deployment.md",
}


def expected_form(field: str) -> str:
    """What a :class:`Settings` field accepts, in words
    (``max_batch`` → ``an integer >= 1``)."""
    info = Settings.model_fields[field]
    annotation = info.annotation
    base = next((a for a in (annotation, *get_args(annotation)) if a in _FORMS), None)
    if field == "cors_origins":
        text = "origins separated by commas, or a JSON list"
    elif field == "preload":
        from bnncore_service.preload import FORM

        text = FORM
    elif field == "object_store_url":
        text = S3_URL_FORM
    elif field == "engine":
        text = "auto or keras"
    elif field == "role":
        text = "full or inference"
    elif field == "log_format":
        text = "text or json"
    elif field == "log_level":
        text = "debug, info, warning, error or critical"
    elif field == "migrate":
        text = "auto or off"
    else:
        text = _FORMS.get(base, "a value")
    bounds = []
    for item in info.metadata:
        for kind, sign in (
            (annotated_types.Ge, ">="),
            (annotated_types.Gt, ">"),
            (annotated_types.Le, "<="),
            (annotated_types.Lt, "<"),
        ):
            if isinstance(item, kind):
                bounds.append(f"{sign} {getattr(item, kind.__name__.lower())}")
    if bounds:
        text += " " + " and ".join(bounds)
    if type(None) in get_args(annotation):
        text += ", or unset"
    return text


def load_settings() -> Settings:
    """:class:`Settings` from the environment, with one-line errors.

    Raises:
        SettingsError: naming every bad ``BNN_*`` variable, what it holds and
            the expected form, on one line.
    """
    try:
        settings = Settings()
        settings.api_key_scopes()  # its own format, checked here too
        return settings
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            if field not in Settings.model_fields:
                problems.append(str(error["msg"]))
                continue
            variable = f"BNN_{field.upper()}"
            secret = Settings.model_fields[field].repr is False
            shown = "(hidden)" if secret else repr(error.get("input"))
            problems.append(f"{variable}={shown}: expected {expected_form(field)}")
        raise SettingsError(
            "invalid configuration: " + "; ".join(dict.fromkeys(problems))
        ) from None
    except ValueError as exc:  # BNN_API_KEYS: names the key by position only
        raise SettingsError(f"invalid configuration: {exc}") from None


# The field table of the pydantic-free reader (bnncore_service/settings_env.py).

FIELDS_MODULE = Path(__file__).with_name("settings_fields.py")
WRITE_FIELDS = "python -m bnncore_service.config --write-fields"

_KINDS: dict[Any, str] = {
    Path: "path",
    int: "int",
    float: "float",
    bool: "bool",
    str: "str",
    str | None: "str",
    SecretStr | None: "secret",
}
# The field validators settings_env applies by the same functions (settings_rules).
_VALIDATED = {
    "_split_origins": ("cors_origins", "before", "origins"),
    "_check_preload": ("preload", "after", "preload"),
}
_BOUNDS = {
    annotated_types.Ge: ">=",
    annotated_types.Gt: ">",
    annotated_types.Le: "<=",
    annotated_types.Lt: "<",
}
_FieldRow = tuple[str, str, Any, tuple[tuple[str, Any], ...], str | None, bool]


def _unreadable(what: str) -> TypeError:
    return TypeError(
        f"{what}: the pydantic-free settings reader does not handle it; extend "
        "bnncore_service/settings_env.py and config.field_rows, then run "
        f"{WRITE_FIELDS}"
    )


def field_rows(cls: type[BaseSettings] = Settings) -> list[_FieldRow]:
    """The fields of ``cls`` (:class:`Settings`) as plain data for
    :mod:`bnncore_service.settings_env`: (name, kind, default, bounds, pattern,
    hidden).

    Raises:
        TypeError: a field, validator or configuration the reader does not
            handle (it would read such a setting differently from pydantic).
    """
    expected_config = {**BaseSettings.model_config, "env_prefix": "BNN_"}
    expected_config["extra"] = "ignore"
    if cls.model_config != expected_config:
        changed = sorted(
            key
            for key in {*cls.model_config, *expected_config}
            if cls.model_config.get(key) != expected_config.get(key)
        )
        raise _unreadable(f"{cls.__name__}.model_config {changed}")
    decorators = cls.__pydantic_decorators__
    if (
        decorators.model_validators
        or decorators.root_validators
        or decorators.validators
        or cls.settings_customise_sources.__func__  # type: ignore[attr-defined]
        is not BaseSettings.settings_customise_sources.__func__  # type: ignore[attr-defined]
    ):
        raise _unreadable("a model validator or custom settings sources")
    validated: dict[str, str] = {}  # field → kind
    for name, decorator in decorators.field_validators.items():
        field, mode, kind = _VALIDATED.get(name, ("", "", ""))
        if decorator.info.fields != (field,) or decorator.info.mode != mode:
            raise _unreadable(f"the field validator {cls.__name__}.{name}")
        validated[field] = kind
    rows: list[_FieldRow] = []
    for name, info in cls.model_fields.items():
        where = f"{cls.__name__}.{name}"
        if info.alias or info.validation_alias:
            raise _unreadable(f"{where}'s alias")
        if name in validated:
            kind = validated[name]
            fits = info.annotation == (list[str] if kind == "origins" else str)
        else:
            kind = _KINDS.get(info.annotation, "")
            fits = bool(kind)
        if not fits:
            raise _unreadable(f"{where}'s type {info.annotation}")
        default: Any = info.default
        if info.default_factory is not None:
            default = tuple(info.get_default(call_default_factory=True))
            if kind != "origins" or default:
                raise _unreadable(f"{where}'s default factory")
        elif kind == "path":
            default = str(default)
        if default not in (None, ()) and not isinstance(default, str | int | float):
            raise _unreadable(f"{where}'s default {default!r}")
        bounds: list[tuple[str, Any]] = []
        pattern = None
        for item in info.metadata:
            sign = _BOUNDS.get(type(item))
            if sign is not None and kind in ("int", "float"):
                bounds.append((sign, getattr(item, type(item).__name__.lower())))
            elif kind == "origins" and item is NoDecode:
                pass
            elif kind == "str" and set(vars(item)) == {"pattern"}:
                pattern = item.pattern
            else:
                raise _unreadable(f"{where}'s constraint {item!r}")
        rows.append((name, kind, default, tuple(bounds), pattern, info.repr is False))
    return rows


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # double quotes, as ruff formats them
    if isinstance(value, tuple):
        items = [_literal(item) for item in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    return repr(value)


def fields_module(cls: type[BaseSettings] = Settings) -> str:
    """The text of ``bnncore_service/settings_fields.py``: :func:`field_rows`
    of ``cls`` (:class:`Settings`)."""
    lines = [
        '"""The fields of :class:`bnncore_service.config.Settings` as plain data, for',
        ":mod:`bnncore_service.settings_env` (which reads the settings without",
        "pydantic).",
        "",
        "Generated from ``Settings.model_fields`` by",
        f"``{WRITE_FIELDS}``: do not edit",
        "(tests/service/test_settings_env.py checks that it is current).",
        '"""',
        "",
        "from typing import Any",
        "",
        f"PREFIX = {_literal(cls.model_config['env_prefix'])}",
        "",
        "# (name, kind, default, bounds, pattern, hidden): settings_env.KINDS.",
        "FIELDS: tuple[",
        "    tuple[str, str, Any, tuple[tuple[str, Any], ...], str | None, bool], ...",
        "] = (",
    ]
    for row in field_rows(cls):
        lines.append("    (")
        lines.extend(f"        {_literal(item)}," for item in row)
        lines.append("    ),")
    lines.append(")")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bnncore_service.config --write-fields``: writes
    ``bnncore_service/settings_fields.py`` from :class:`Settings`."""
    parser = argparse.ArgumentParser(
        prog="python -m bnncore_service.config", description=main.__doc__
    )
    parser.add_argument(
        "--write-fields",
        action="store_true",
        help=f"write {FIELDS_MODULE.name} (the table of bnncore_service.settings_env)",
    )
    args = parser.parse_args(argv)
    if not args.write_fields:
        parser.error("nothing to do: pass --write-fields")
    FIELDS_MODULE.write_text(fields_module(), encoding="utf-8")
    print(f"wrote {FIELDS_MODULE}")


if __name__ == "__main__":
    main()
