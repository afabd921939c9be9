"""Structured logs an operator can read: one line per event, text or JSON.

An event is an ordinary :mod:`logging` record with a stable snake_case name
(``model_loaded``) and typed fields, logged with :func:`log_event`. Two
formatters render the same record (``BNN_LOG_FORMAT``):

* ``text``: ``<ts> <LEVEL> <logger> <event>: <message> key=value ...``
  (values with spaces or quotes are JSON-quoted, so a line never breaks);
* ``json``: one object per line, ``{"ts", "level", "logger", "event",
  "message", <fields>...}``; fields keep their types (ints stay ints), a
  traceback is the string ``exc_info``.

Records of other libraries get the event ``log`` (uvicorn's access lines
``http_access``, with their client, method, path and status as fields), so
every line of the process has the same shape. The standard library is
enough: a JSON formatter is a few lines, so ``python-json-logger`` is not a
dependency.

:func:`configure_logging` installs the formatter on the root logger and
routes uvicorn's and TensorFlow's loggers through it; ``python -m bnncore_service``
calls it before the server starts, an app's lifespan otherwise
(:func:`logging_configured`, which restores the previous state at shutdown).
:class:`RequestLog` logs refused, failed and slow requests. Request bodies,
tensors and secrets are never logged: the start-up line hides every setting
named like a secret and the password of any URL (:func:`settings_fields`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    asynccontextmanager,
    contextmanager,
    suppress,
)
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from bnncore_service.config import Settings

__all__ = [
    "FieldValue",
    "JsonFormatter",
    "RequestLog",
    "TextFormatter",
    "client_address",
    "configure_logging",
    "log_event",
    "logging_configured",
    "mark_logged",
    "redact_url",
    "refusal_level",
    "settings_fields",
    "with_logging",
]

FieldValue: TypeAlias = str | int | float | bool | list[str] | None
"""What an event field may hold (anything else is logged as its ``str``)."""

HIDDEN = "***"
"""What a secret is logged as."""

HANDLER_NAME = "bnncore-service"
"""Name of the handler :func:`configure_logging` installs on the root logger."""

_TAKEN_OVER = ("uvicorn", "uvicorn.error", "uvicorn.access", "tensorflow")
"""Loggers with handlers of their own, routed to the root handler instead."""

_SECRET_WORDS = frozenset(
    {
        "key",
        "keys",
        "secret",
        "password",
        "passwd",
        "token",
        "credential",
        "credentials",
    }
)
_PLAIN = re.compile(r"[^\s\"'=\\]+")
_REASON_BYTES = 2048
"""Bytes of an error response read for the logged reason."""
_LOGGED_FLAG = "_bnncore_logged"


class _EventMessage:
    """A record's message, formatted only when a handler emits it."""

    __slots__ = ("fields", "template")

    def __init__(self, template: str, fields: Mapping[str, Any]) -> None:
        self.template = template
        self.fields = fields

    def __str__(self) -> str:
        return self.template.format_map(self.fields)


def log_event(
    logger: logging.Logger,
    level: int,
    event: str,
    template: str,
    /,
    *,
    exc_info: BaseException | None = None,
    **fields: Any,
) -> None:
    """Logs one event: a stable name, a sentence and typed fields.

    Args:
        logger: Where (``logging.getLogger("service....")``).
        level: ``logging.INFO`` etc.
        event: The event's snake_case name, e.g. ``"model_loaded"``.
        template: The message, ``str.format`` style over ``fields``
            (``"loaded {model} in {load_ms} ms"``); formatted only if emitted.
        exc_info: An exception whose traceback goes with the line.
        **fields: The event's data; ``str``, ``int``, ``float``, ``bool``,
            ``None`` or a list of ``str`` (other values are logged as ``str``).

    Example:
        >>> log_event(log, logging.INFO, "model_evicted", "evicted {key}",
        ...           key="3fa2c1d0b9e8", reason="cache full")
    """
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        _EventMessage(template, fields),
        exc_info=exc_info,
        extra={"event": event, "fields": fields},
        stacklevel=2,
    )


def _iso(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _typed(value: Any) -> FieldValue:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [str(v) for v in value]
    return str(value)


def _event(record: logging.LogRecord) -> str:
    event = getattr(record, "event", None)
    if isinstance(event, str):
        return event
    return "http_access" if record.name == "uvicorn.access" else "log"


def _fields(record: logging.LogRecord) -> dict[str, FieldValue]:
    fields = getattr(record, "fields", None)
    if isinstance(fields, Mapping):
        return {str(k): _typed(v) for k, v in fields.items()}
    args = record.args
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        client, method, path, _, status = args
        return {
            "client": str(client),
            "method": str(method),
            "path": str(path),
            "status": status if isinstance(status, int) else str(status),
        }
    return {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601 UTC), ``level``,
    ``logger``, ``event``, ``message``, then the event's fields (a field never
    replaces one of those five keys), and ``exc_info`` with the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": _event(record),
            "message": record.getMessage(),
        }
        for key, value in _fields(record).items():
            data.setdefault(key, value)
        if record.exc_info:
            data["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            data["stack_info"] = self.formatStack(record.stack_info)
        # ASCII: the line survives any stdout encoding and any log shipper.
        return json.dumps(data, default=str)


def _text_value(value: FieldValue) -> str:
    if isinstance(value, str) and value.isprintable() and _PLAIN.fullmatch(value):
        return value
    return json.dumps(value, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> <logger> <event>: <message> key=value ...``; a traceback
    follows on the next lines, as Python prints it. Only an event's own fields
    are appended (uvicorn's access line already says its fields)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if not message.isprintable():  # newlines, escape sequences: escaped
            message = json.dumps(message, ensure_ascii=False)[1:-1]
        line = (
            f"{_iso(record.created)} {record.levelname} {record.name} "
            f"{_event(record)}: {message}"
        )
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            pairs = " ".join(f"{k}={_text_value(_typed(v))}" for k, v in fields.items())
            if pairs:
                line += " " + pairs
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _AlreadyLogged(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" for an exception the
    service logged already, with its request (:func:`mark_logged`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("uvicorn") and record.exc_info:
            return not getattr(record.exc_info[1], _LOGGED_FLAG, False)
        return True


def mark_logged(exc: BaseException) -> None:
    """Notes that ``exc`` was logged with its traceback, so the server's own
    copy of it is dropped."""
    # An exception type with __slots__ cannot be marked: it is logged twice.
    with suppress(AttributeError):
        setattr(exc, _LOGGED_FLAG, True)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"log format: received {log_format!r}; allowed: 'text', 'json'")


def _installed() -> logging.Handler | None:
    return next(
        (h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME),
        None,
    )


def configure_logging(
    log_format: str, level: str | int, stream: IO[str] | None = None
) -> logging.Handler:
    """Sends every log record of the process, one line each, to ``stream``.

    Installs one handler on the root logger (replacing the one an earlier call
    installed), sets the root level, and clears the handlers of uvicorn's and
    TensorFlow's loggers so that their records reach it too. uvicorn's
    ``--log-level`` still sets the level of its own loggers.

    Args:
        log_format: ``"text"`` or ``"json"`` (``BNN_LOG_FORMAT``).
        level: ``"info"`` etc. or a ``logging`` level (``BNN_LOG_LEVEL``).
        stream: Where lines go (default ``sys.stdout``, looked up now).

    Returns:
        The handler installed.

    Raises:
        ValueError: an unknown format or level.
    """
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(
            f"log level: received {level!r}; allowed: debug, info, warning, "
            "error, critical"
        )
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(_AlreadyLogged())
    root = logging.getLogger()
    previous = _installed()
    if previous is not None:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _TAKEN_OVER:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


@contextmanager
def logging_configured(
    log_format: str, level: str | int, stream: IO[str] | None = None
) -> Iterator[None]:
    """:func:`configure_logging` for the duration of the block, the previous
    state restored after (in ``finally``).

    Nothing is changed when the process is configured already (``python -m
    service`` does it before the server starts, so that uvicorn's lines
    after the app's shutdown keep the format).
    """
    if _installed() is not None:
        yield
        return
    root = logging.getLogger()
    saved_level = root.level
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
        )
        for name in _TAKEN_OVER
    }
    handler = configure_logging(log_format, level, stream)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.propagate = propagate


Lifespan: TypeAlias = Callable[[Any], AbstractAsyncContextManager[None]]


def with_logging(
    lifespan: Lifespan,
    settings: Settings,
    version: Callable[[], str],
    engine_isa: Callable[[], str],
) -> Lifespan:
    """An app's lifespan inside :func:`logging_configured`, with the
    lifecycle lines: ``service_starting`` (INFO: the version and every
    setting, secrets hidden), ``service_started`` (INFO: start-up time and
    the packed engine's instruction set) and ``service_stopped``.

    Args:
        lifespan: The app's own lifespan.
        settings: Its settings (``BNN_LOG_FORMAT``, ``BNN_LOG_LEVEL``).
        version: The version logged (``bnncore``'s on a full replica,
            ``bnncore_runtime``'s on an inference replica); called at start.
        engine_isa: The packed engine's instruction set; called once started.
    """
    log = logging.getLogger("service")

    @asynccontextmanager
    async def logged(app: Any) -> AsyncIterator[None]:
        with logging_configured(settings.log_format, settings.log_level):
            start = time.perf_counter()
            shown: dict[str, Any] = settings_fields(settings)
            log_event(
                log,
                logging.INFO,
                "service_starting",
                "bnncore service {version} starting",
                version=version(),
                **shown,
            )
            try:
                async with lifespan(app):
                    log_event(
                        log,
                        logging.INFO,
                        "service_started",
                        "started in {startup_ms} ms; packed engine: {engine_isa}",
                        startup_ms=round((time.perf_counter() - start) * 1000, 1),
                        engine_isa=engine_isa(),
                    )
                    yield
            finally:
                log_event(log, logging.INFO, "service_stopped", "stopped")

    return logged


def redact_url(text: str) -> str:
    """``scheme://user:pass@host/db`` → ``scheme://user:***@host/db``; other
    text unchanged."""
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return HIDDEN  # not parsable: it may hold anything
    if not password:
        return text
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    netloc = f"{parts.username or ''}:{HIDDEN}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _secret_name(name: str) -> bool:
    """``api_keys``, ``s3_secret_access_key``, ``auth_token``: yes;
    ``max_definition_keys`` (a limit, ``max_*``): no."""
    words = set(name.lower().split("_"))
    return bool(words & _SECRET_WORDS) and not name.startswith("max_")


def _declared(settings: Any) -> list[tuple[str, bool]]:
    """(name, declared with ``repr=False``) of every field of ``settings``: a
    pydantic model's fields, or those of the ``Settings`` table that
    :class:`bnncore_service.settings_env.EnvSettings` has."""
    fields = getattr(type(settings), "model_fields", None)
    if fields is not None:
        return [(name, info.repr is False) for name, info in fields.items()]
    from bnncore_service.settings_fields import FIELDS

    return [(row[0], row[5]) for row in FIELDS]


def settings_fields(settings: Any) -> dict[str, FieldValue]:
    """Every setting as ``BNN_<NAME>`` → its effective value, secrets hidden.

    Hidden (``***`` when set): every secret (pydantic's ``SecretStr``,
    :class:`bnncore_service.settings_env.Secret`: what has
    ``get_secret_value``), every field declared with ``repr=False`` and
    every field whose name has the word key(s), secret, password, token or
    credential(s) (but not a limit, ``max_*``). The password of a URL in any
    other string is hidden too (``BNN_DATABASE_URL``).

    Args:
        settings: A pydantic settings model (:class:`Settings`) or the
            inference replica's :class:`~bnncore_service.settings_env.EnvSettings`.
    """
    fields: dict[str, FieldValue] = {}
    for name, declared_secret in _declared(settings):
        value = getattr(settings, name)
        secret = (
            hasattr(value, "get_secret_value") or declared_secret or _secret_name(name)
        )
        if value is None:
            shown: FieldValue = None
        elif secret:
            shown = HIDDEN
        elif isinstance(value, str):
            shown = redact_url(value)
        elif isinstance(value, Path):
            shown = str(value)
        elif isinstance(value, list | tuple):
            shown = [redact_url(str(v)) for v in value]
        else:
            shown = _typed(value)
        fields[f"BNN_{name.upper()}"] = shown
    return fields


def refusal_level(status: int) -> int:
    """The level of a refused request: ``WARNING`` for what signals abuse or
    a limit (401, 403, 413, 429, 431, 503, 504), ``ERROR`` for other 5xx,
    ``INFO`` for other 4xx (a client's mistake)."""
    if status in (401, 403, 413, 429, 431, 503, 504):
        return logging.WARNING
    return logging.ERROR if status >= 500 else logging.INFO


def _reason(body: bytes) -> str:
    """The message of an error response (``{"error": ...}``), or its text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        text = data["error"]
    elif isinstance(data, dict) and isinstance(data.get("detail"), str):
        text = data["detail"]
    else:
        text = body.decode("utf-8", "replace")
    return text if len(text) <= 500 else text[:497] + "..."


_CREDENTIAL_HEADERS = (b"authorization", b"proxy-authorization", b"x-api-key")
_SCHEMES = frozenset({"bearer", "basic", "digest", "token"})


def _hide_credentials(text: str, scope: Mapping[str, Any]) -> str:
    """``text`` without what the request sent as credentials, whole or a
    prefix of 4 characters or more (a message may quote the start of a
    malformed ``Authorization`` header, which may be a key)."""
    for name, value in scope.get("headers") or ():
        if name.lower() not in _CREDENTIAL_HEADERS:
            continue
        for token in value.decode("latin-1").split():
            if token.lower() in _SCHEMES:
                continue
            for end in range(len(token), 3, -1):
                if token[:end] in text:
                    text = text.replace(token[:end], HIDDEN)
                    break
    return text


def client_address(scope: Mapping[str, Any]) -> str:
    """The peer's host (``""`` when unknown)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


Scope = dict[str, Any]


class RequestLog:
    """ASGI middleware logging each HTTP request's outcome.

    * ``request_refused``: a response with status 400 or more, with its
      status, reason (the ``error`` of the envelope), method, route template,
      client and duration; the level is :func:`refusal_level`;
    * ``slow_request`` (WARNING): answered after more than ``slow_ms``;
    * ``request_completed`` (DEBUG): any other request.

    An exception that escapes is left to the app's error handler, which logs
    ``request_failed`` with the traceback. Add it outermost, so that it sees
    what the other middleware refuse.

    Args:
        app: The inner app.
        slow_ms: ``BNN_SLOW_REQUEST_MS``.
    """

    def __init__(self, app: Any, slow_ms: float) -> None:
        self.app = app
        self.slow_ms = slow_ms
        self.log = logging.getLogger("service.requests")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        body = bytearray()

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif (
                message["type"] == "http.response.body"
                and status >= 400
                and len(body) < _REASON_BYTES
            ):
                body.extend(message.get("body", b"")[: _REASON_BYTES - len(body)])
            await send(message)

        await self.app(scope, receive, send_wrapper)
        self._log(scope, status, bytes(body), (time.perf_counter() - start) * 1000)

    def _log(self, scope: Scope, status: int, body: bytes, ms: float) -> None:
        slow = ms > self.slow_ms
        if status < 400 and not slow and not self.log.isEnabledFor(logging.DEBUG):
            return  # the common case costs nothing more
        from bnncore_service.metrics import MODEL_STATE_KEY, route_template

        fields: dict[str, Any] = {
            "method": str(scope.get("method", "")),
            "route": route_template(scope)[0],
            "status": status,
            "duration_ms": round(ms, 1),
            "client": client_address(scope),
        }
        model = (scope.get("state") or {}).get(MODEL_STATE_KEY)
        if model:
            fields["model"] = str(model)
        if status >= 400:
            log_event(
                self.log,
                refusal_level(status),
                "request_refused",
                "{method} {route} refused with {status}",
                **fields,
                reason=_hide_credentials(_reason(body), scope),
            )
        if slow:
            log_event(
                self.log,
                logging.WARNING,
                "slow_request",
                "{method} {route} took {duration_ms} ms "
                "(BNN_SLOW_REQUEST_MS={threshold_ms})",
                **fields,
                threshold_ms=self.slow_ms,
            )
        elif status < 400:
            log_event(
                self.log,
                logging.DEBUG,
                "request_completed",
                "{method} {route} {status} in {duration_ms} ms",
                **fields,
            )
