"""A small HTTP client of the bnncore model service (standard library + NumPy).

Example:
    >>> from bnncore.client import Client, push
    >>> version = push(model, "mnist", "http://127.0.0.1:8000", api_key=key)
    >>> client = Client("http://127.0.0.1:8000", api_key=key)
    >>> probabilities = client.infer("mnist", images, version=version)

``push`` exports a Keras model (``bnncore.export``: its definition JSON and its
packed weights file), registers the definition and uploads the weights.
``infer`` speaks the Open Inference Protocol V2 (REST, JSON). Every refusal
raises :class:`ClientError` with the HTTP status and the server's message.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["DATATYPES", "Client", "ClientError", "push"]

DATATYPES = {
    "BOOL": np.dtype("bool"),
    "UINT8": np.dtype("uint8"),
    "UINT16": np.dtype("uint16"),
    "UINT32": np.dtype("uint32"),
    "UINT64": np.dtype("uint64"),
    "INT8": np.dtype("int8"),
    "INT16": np.dtype("int16"),
    "INT32": np.dtype("int32"),
    "INT64": np.dtype("int64"),
    "FP16": np.dtype("float16"),
    "FP32": np.dtype("float32"),
    "FP64": np.dtype("float64"),
}
"""Open Inference Protocol datatypes and their NumPy dtypes."""
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
_MAX_ERROR_BYTES = 64 * 1024


class ClientError(Exception):
    """A request the service refused, or that could not reach it.

    Attributes:
        status: The HTTP status (``None``: no response, e.g. connection refused
            or timed out).
        message: The server's ``error`` message (or the transport's).
        method / url: The request.
    """

    def __init__(self, status: int | None, message: str, method: str, url: str):
        self.status = status
        self.message = message
        self.method = method
        self.url = url
        where = f"{method} {url}"
        prefix = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{where}: {prefix}: {message}")


def _datatype(array: np.ndarray) -> str:
    name = _NAMES.get(array.dtype.newbyteorder("="))
    if name is None:
        raise TypeError(
            f"inputs: arrays of dtype {array.dtype} cannot be sent; allowed: "
            f"{', '.join(str(d) for d in DATATYPES.values())}"
        )
    return name


def _tensor(name: str, value: Any) -> dict[str, Any]:
    array = np.asarray(value)
    if array.dtype == np.float64 and not isinstance(value, np.ndarray):
        array = array.astype(np.float32)  # Python floats: the models are FP32
    datatype = _datatype(array)
    return {
        "name": name,
        "shape": [int(d) for d in array.shape],
        "datatype": datatype,
        "data": array.reshape(-1).tolist(),
    }


def _array(output: Mapping[str, Any]) -> np.ndarray:
    dtype = DATATYPES.get(output.get("datatype", "FP32"), np.dtype("float32"))
    data = output.get("data", [])
    array = np.asarray(data, dtype=np.float64 if dtype.kind == "f" else None)
    return array.astype(dtype).reshape([int(d) for d in output["shape"]])


class Client:
    """A client of one service.

    Args:
        base_url: E.g. ``"http://127.0.0.1:8000"``.
        api_key: Sent as ``Authorization: Bearer <api_key>`` (needed when the
            service sets ``BNN_API_KEYS``). Default: ``$BNN_API_KEY``.
        timeout: Seconds per request.
    """

    def __init__(
        self, base_url: str, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"base_url: received {base_url!r}; expected an http:// or https:// "
                "URL such as 'http://127.0.0.1:8000'"
            )
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("BNN_API_KEY")
        self.timeout = timeout
        self._inputs: dict[tuple[str, int | None], list[str]] = {}

    # ------------------------------------------------------------------
    # Transport
    # ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        """Sends one request; returns ``(status, body)`` of a 2xx response.

        Raises:
            ClientError: a non-2xx status (with the server's ``error``), or no
                response at all.
        """
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                raw = error.read(_MAX_ERROR_BYTES)
            try:
                message = str(json.loads(raw)["error"])
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace").strip() or str(error.reason)
            raise ClientError(error.code, message, method, url) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(None, str(reason), method, url) from None

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        content_type = None if payload is None else "application/json"
        _, raw = self.request(method, path, body, content_type)
        return json.loads(raw) if raw else None

    @staticmethod
    def _model_path(name: str, version: int | None) -> str:
        path = f"/v2/models/{urllib.parse.quote(name, safe='')}"
        if version is not None:
            path += f"/versions/{int(version)}"
        return path

    # ------------------------------------------------------------------
    # Registry
    # ------------------------------------------------------------------

    def server(self) -> dict[str, Any]:
        """Server metadata (``GET /v2``)."""
        return self._json("GET", "/v2")

    def live(self) -> bool:
        """Whether the service answers ``GET /v2/health/live``."""
        try:
            self.request("GET", "/v2/health/live")
        except ClientError:
            return False
        return True

    def register(self, name: str, definition: Mapping[str, Any]) -> int:
        """Registers a definition under ``name``; returns its version number.

        The same definition again returns the version it already has.
        """
        reply = self._json(
            "POST", "/v2/models", {"name": name, "definition": dict(definition)}
        )
        return int(reply["version"])

    def models(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        """A page of registered models (``GET /v2/models``)."""
        return self._json("GET", f"/v2/models?limit={int(limit)}&offset={int(offset)}")

    def metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """Model metadata: inputs, outputs, versions, ``weights``."""
        return self._json("GET", self._model_path(name, version))

    def summary(
        self, name: str, version: int | None = None, format: str = "json"
    ) -> Any:
        """The model's profile report (a dict for ``json``, else text)."""
        path = self._model_path(name, version) + "/summary"
        path += "?" + urllib.parse.urlencode({"format": format})
        _, raw = self.request("GET", path)
        return json.loads(raw) if format == "json" else raw.decode()

    def delete(self, name: str, version: int) -> None:
        """Deletes one version."""
        self._json("DELETE", self._model_path(name, version))

    def upload_weights(
        self, name: str, version: int, weights: str | os.PathLike | bytes
    ) -> dict[str, Any]:
        """Uploads a safetensors weights file (a path, or its bytes).

        Returns:
            The server's answer: ``sha256``, ``size``, ``format``, ``tensors``.
        """
        if isinstance(weights, str | os.PathLike):
            with open(weights, "rb") as handle:
                data = handle.read()
        elif isinstance(weights, bytes | bytearray | memoryview):
            data = bytes(weights)
        else:
            raise TypeError(
                f"weights: expected a path or bytes, received {type(weights).__name__}"
            )
        path = self._model_path(name, int(version)) + "/weights"
        _, raw = self.request("PUT", path, data, "application/octet-stream")
        return json.loads(raw)

    # ------------------------------------------------------------------
    # Inference (Open Inference Protocol V2)
    # ------------------------------------------------------------------

    def ready(self, name: str, version: int | None = None) -> bool:
        """Whether the model is ready for inference (``GET .../ready``)."""
        try:
            _, raw = self.request("GET", self._model_path(name, version) + "/ready")
        except ClientError as error:
            if error.status == 503:
                return False
            raise
        try:
            reply = json.loads(raw) if raw else {}
        except ValueError:
            reply = {}
        return bool(reply.get("ready", True)) if isinstance(reply, dict) else True

    def _input_names(self, name: str, version: int | None) -> list[str]:
        key = (name, version)
        if key not in self._inputs:
            metadata = self.metadata(name, version)
            self._inputs[key] = [t["name"] for t in metadata["inputs"]]
        return self._inputs[key]

    def infer(
        self,
        name: str,
        inputs: np.ndarray | Mapping[str, Any],
        version: int | None = None,
        outputs: list[str] | None = None,
        request_id: str | None = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Runs the model on the service.

        Args:
            name: Registered model name.
            inputs: One array (for a single-input model), or input name →
                array. Python floats are sent as FP32; arrays keep their dtype
                (FP16/32/64, INT8–64, UINT8–64, BOOL).
            version: A version; ``None``: the latest.
            outputs: Names of the outputs to return (default: all).
            request_id: Sent as the request ``id`` (the server echoes it).

        Returns:
            An array when ``inputs`` is one array and the model answers with
            one output; otherwise output name → array.
        """
        if isinstance(inputs, Mapping):
            tensors = [_tensor(str(k), v) for k, v in inputs.items()]
        else:
            names = self._input_names(name, version)
            if len(names) != 1:
                raise ValueError(
                    f"inputs: model {name!r} has {len(names)} inputs {names}; pass "
                    "a dict of input name → array"
                )
            tensors = [_tensor(names[0], inputs)]
        payload: dict[str, Any] = {"inputs": tensors}
        if outputs is not None:
            payload["outputs"] = [{"name": n} for n in outputs]
        if request_id is not None:
            payload["id"] = request_id
        reply = self._json("POST", self._model_path(name, version) + "/infer", payload)
        results = {o["name"]: _array(o) for o in reply["outputs"]}
        if not isinstance(inputs, Mapping) and len(results) == 1:
            return next(iter(results.values()))
        return results


def push(
    model: Any,
    name: str,
    base_url: str,
    api_key: str | None = None,
    timeout: float = 300.0,
) -> int:
    """Exports a Keras model, registers it and uploads its weights.

    The definition is ``bnncore.export.to_definition(model)`` (Keras JSON,
    which the service translates itself; it never reaches Keras
    deserialization), the weights ``bnncore.export.to_bytes(model)`` (sign
    bits, k-bit codes, folded BatchNorm). Pushing the same model again (e.g.
    after more training) re-uses its version and replaces its weights; a
    changed definition (other layers, or other layer names, which Keras picks
    per process for unnamed layers) becomes a new version.

    Args:
        model: A built ``keras.Model`` whose layers have stable names.
        name: Registry name (letters, digits, ``_`` and ``-``).
        base_url: The service, e.g. ``"http://127.0.0.1:8000"``.
        api_key: A key with the ``admin`` scope, if the service requires keys.
        timeout: Seconds per request.

    Returns:
        The version number.
    """
    from bnncore import export

    client = Client(base_url, api_key=api_key, timeout=timeout)
    version = client.register(name, export.to_definition(model))
    client.upload_weights(name, version, export.to_bytes(model))
    return version
