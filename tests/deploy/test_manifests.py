"""The Kubernetes and KServe manifests of ``deploy/``, checked without a cluster.

Oracles, all local (nothing is downloaded):

* Kubernetes objects deserialize into the ``kubernetes`` client's model
  classes, and every key is walked against the class's ``attribute_map`` and
  ``openapi_types``: an unknown or misspelled field fails (the API server
  would drop it silently, or refuse it with ``--validate=strict``).
* KServe objects validate against the CRD schemas of KServe's repository
  (``tests/deploy/schemas/``, see its README), with unknown fields refused
  wherever the CRD does not preserve them; their containers are also walked
  as ``V1Container``.
* Consistency with the service: the port the command serves is the declared
  container port and the one the probes, the Service and the scrape
  annotations use; probes call the real health routes of the app; every
  ``BNN_*`` variable is a field of ``bnncore_service.config.Settings`` and each
  container's environment (Secret values included) loads as the service
  loads it; every Secret key referenced exists; the InferenceService's memory
  is what ``deploy/memory.py`` computes from the service's own estimate of
  the model it serves.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import jsonschema
import kubernetes.client
import numpy as np
import pytest
import yaml

from bnncore_service.config import Settings, SettingsError, load_settings
from bnncore_service.preload import PreloadTarget, parse_preload

# Starlette's TestClient warns that it prefers httpx2; httpx is what we have.
pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

CORE_KINDS = {
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
}
KSERVE_KINDS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): (
        "servingruntimes.serving.kserve.io.v1alpha1.json"
    ),
    ("serving.kserve.io/v1beta1", "InferenceService"): (
        "inferenceservices.serving.kserve.io.v1beta1.json"
    ),
}
AWS_VARIABLES = {
    # The standard variables boto3 reads (the object store's client).
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path.name}: no document"
        found += [(f"{path.name}#{i}", doc) for i, doc in enumerate(docs)]
    return found


DOCUMENTS = _documents()


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCUMENTS if doc["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    (doc,) = _of_kind(kind)
    return doc


# ----------------------------------------------------------------------------
# Schemas
# ----------------------------------------------------------------------------


def _strict_walk(data: Any, type_name: str, where: str) -> list[str]:
    """Problems of ``data`` read as the kubernetes client type ``type_name``
    (``V1Container``, ``list[V1EnvVar]``, ``dict[str, str]``, ``str``...)."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            return [f"{where}: expected a list, got {type(data).__name__}"]
        inner = type_name[5:-1]
        return [
            p
            for i, d in enumerate(data)
            for p in _strict_walk(d, inner, f"{where}[{i}]")
        ]
    if type_name.startswith("dict["):
        if not isinstance(data, dict):
            return [f"{where}: expected a mapping, got {type(data).__name__}"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [
            p for k, v in data.items() for p in _strict_walk(v, inner, f"{where}.{k}")
        ]
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float)}
    if type_name in primitive:
        ok = isinstance(data, primitive[type_name]) and not (
            type_name == "int" and isinstance(data, bool)
        )
        return [] if ok else [f"{where}: expected {type_name}, got {data!r}"]
    if type_name == "object":  # IntOrString, free-form
        return [] if isinstance(data, str | int) else [f"{where}: got {data!r}"]
    model = getattr(kubernetes.client.models, type_name)
    if not isinstance(data, dict):
        return [f"{where}: expected a {type_name} mapping, got {data!r}"]
    fields = {json_key: attr for attr, json_key in model.attribute_map.items()}
    problems = []
    for key, value in data.items():
        if key not in fields:
            problems.append(f"{where}.{key}: not a field of {type_name}")
            continue
        problems += _strict_walk(
            value, model.openapi_types[fields[key]], f"{where}.{key}"
        )
    return problems


class _Response:
    """What ``ApiClient.deserialize`` reads: a response with ``data``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.data = json.dumps(document)


def _strict_schema(schema: Any) -> Any:
    """The CRD schema with unknown properties refused where the CRD does not
    preserve them (the API server prunes them; ``--validate=strict`` refuses)."""
    if isinstance(schema, list):
        return [_strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict_schema(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _crd_validator(file: str) -> jsonschema.protocols.Validator:
    crd = json.loads((SCHEMAS / file).read_text())
    schema = _strict_schema(crd["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def test_every_document_has_a_known_kind_and_all_kinds_are_there() -> None:
    known = set(CORE_KINDS) | set(KSERVE_KINDS)
    seen = set()
    for where, doc in DOCUMENTS:
        key = (doc.get("apiVersion"), doc.get("kind"))
        assert key in known, f"{where}: unknown apiVersion/kind {key}"
        assert doc["metadata"]["name"], where
        seen.add(key)
    assert seen == known


@pytest.mark.parametrize(
    ("where", "doc"),
    [(w, d) for w, d in DOCUMENTS if (d["apiVersion"], d["kind"]) in CORE_KINDS],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_kubernetes_objects_deserialize_strictly(
    where: str, doc: dict[str, Any]
) -> None:
    type_name = CORE_KINDS[doc["apiVersion"], doc["kind"]]
    assert _strict_walk(doc, type_name, where) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client = kubernetes.client.ApiClient()
        built = client.deserialize(_Response(doc), type_name)
    assert type(built).__name__ == type_name
    # Nothing lost on the way: serialized back it is the document.
    assert client.sanitize_for_serialization(built) == doc


@pytest.mark.parametrize(
    ("where", "doc"),
    [(w, d) for w, d in DOCUMENTS if (d["apiVersion"], d["kind"]) in KSERVE_KINDS],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_kserve_objects_validate_against_the_crd(
    where: str, doc: dict[str, Any]
) -> None:
    validator = _crd_validator(KSERVE_KINDS[doc["apiVersion"], doc["kind"]])
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(doc)
    ]
    assert errors == []
    assert _strict_walk(doc["metadata"], "V1ObjectMeta", f"{where}.metadata") == []
    for index, container in enumerate(_kserve_containers(doc)):
        assert _strict_walk(container, "V1Container", f"{where}.container{index}") == []


@pytest.mark.parametrize(
    "mistake",
    [
        (
            "Deployment",
            ["spec", "template", "spec", "containers", 0],
            "imagePullPolice",
        ),
        ("Service", ["spec", "ports", 0], "target_port"),
        ("ServingRuntime", ["spec"], "protocolVersion"),
        ("InferenceService", ["spec", "predictor", "model"], "modelformat"),
        ("InferenceService", ["spec", "predictor"], "scaleMetrics"),
    ],
    ids=["deployment", "service", "runtime", "isvc-model", "isvc-predictor"],
)
def test_the_checks_catch_a_misspelled_field(
    mistake: tuple[str, list[Any], str],
) -> None:
    kind, path, field = mistake
    doc = json.loads(json.dumps(_one(kind)))
    node = doc
    for step in path:
        node = node[step]
    node[field] = "x"
    key = (doc["apiVersion"], doc["kind"])
    if key in CORE_KINDS:
        problems = _strict_walk(doc, CORE_KINDS[key], kind)
        assert any(
            p.endswith(f".{field}: not a field of " + p.split()[-1]) for p in problems
        )
    else:
        messages = [
            e.message for e in _crd_validator(KSERVE_KINDS[key]).iter_errors(doc)
        ]
        assert any(repr(field) in m for m in messages), messages


def test_the_checks_catch_a_wrong_type() -> None:
    doc = json.loads(json.dumps(_one("InferenceService")))
    doc["spec"]["predictor"]["scaleMetric"] = "gpu"
    assert list(
        _crd_validator(KSERVE_KINDS[doc["apiVersion"], "InferenceService"]).iter_errors(
            doc
        )
    )
    deployment = json.loads(json.dumps(_one("Deployment")))
    deployment["spec"]["replicas"] = "2"
    assert _strict_walk(deployment, "V1Deployment", "d") == [
        "d.spec.replicas: expected int, got '2'"
    ]


# ----------------------------------------------------------------------------
# Consistency with the service
# ----------------------------------------------------------------------------


MODEL_SPEC_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion"}
"""KServe's own fields of a predictor's ``model``, besides the container's."""


def _kserve_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a KServe object (a ``model`` without KServe's fields)."""
    if doc["kind"] == "ServingRuntime":
        return list(doc["spec"]["containers"])
    model = doc["spec"]["predictor"]["model"]
    return [{k: v for k, v in model.items() if k not in MODEL_SPEC_FIELDS}]


def _containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind, the object, container) of every container that runs the service."""
    for doc in _of_kind("Deployment"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            yield "Deployment", doc, container
    for doc in _of_kind("ServingRuntime"):
        for container in doc["spec"]["containers"]:
            yield "ServingRuntime", doc, container


def _served_port(container: dict[str, Any]) -> int:
    command = [*container["command"], *container["args"]]
    assert command[:3] == ["python", "-m", "bnncore_service"], command
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options["--host"] == "0.0.0.0"
    return int(options["--port"])


def _port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [
        p["containerPort"] for p in container["ports"] if p.get("name") == port
    ]
    return number


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], int]:
    """The status the real app answers to ``GET path`` (its lifespan run)."""
    from fastapi.testclient import TestClient

    from bnncore_service.main import create_app

    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("routes")))
    statuses: dict[str, int] = {}

    def status(path: str) -> int:
        if path not in statuses:
            with TestClient(app) as client:
                statuses[path] = client.get(path).status_code
        return statuses[path]

    return status


def test_ports_agree_with_what_the_service_serves() -> None:
    for kind, doc, container in _containers():
        port = _served_port(container)
        assert [p["containerPort"] for p in container["ports"]] == [port], kind
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert _port_number(container, container[probe]["httpGet"]["port"]) == port
        annotations = (
            doc["spec"]["template"]["metadata"].get("annotations", {})
            if kind == "Deployment"
            else doc["spec"].get("annotations", {})
        )
        for key, value in annotations.items():
            if key.endswith("/port"):
                assert int(value) == port, (kind, key)
    (deployment,) = _of_kind("Deployment")
    (service,) = _of_kind("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for port in service["spec"]["ports"]:
        assert _port_number(container, port["targetPort"]) == _served_port(container)


def test_the_hpa_scales_the_deployment() -> None:
    hpa, deployment = _one("HorizontalPodAutoscaler"), _one("Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization is relative to the request: the containers must have one.
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        assert container["resources"]["requests"]["cpu"]


def test_probes_and_scrapes_call_real_routes(answers: Callable[[str], int]) -> None:
    for kind, doc, container in _containers():
        paths = {
            p: container[p]["httpGet"]["path"]
            for p in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert paths == {
            "startupProbe": "/v2/health/live",
            "livenessProbe": "/v2/health/live",
            "readinessProbe": "/v2/health/ready",
        }, kind
        annotations = (
            doc["spec"]["template"]["metadata"].get("annotations", {})
            if kind == "Deployment"
            else doc["spec"].get("annotations", {})
        )
        scraped = [v for k, v in annotations.items() if k.endswith("/path")]
        for path in [*paths.values(), *scraped]:
            assert answers(path) == 200, path


def _secret_values() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: {**doc.get("stringData", {}), **doc.get("data", {})}
        for doc in _of_kind("Secret")
    }


def _environment(container: dict[str, Any], name: str = "mnist") -> dict[str, str]:
    """The container's environment as the process sees it: Secret values
    resolved and KServe's ``{{.Name}}`` filled in with ``name``."""
    secrets = _secret_values()
    out = {}
    for variable in container.get("env", []):
        if "valueFrom" in variable:
            ref = variable["valueFrom"]["secretKeyRef"]
            assert ref["name"] in secrets, ref
            assert ref["key"] in secrets[ref["name"]], ref
            out[variable["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            out[variable["name"]] = variable["value"].replace("{{.Name}}", name)
    return out


def _isvc_environment() -> dict[str, str]:
    """The InferenceService's pod: the runtime's variables, overridden by the
    InferenceService's (KServe merges them by name)."""
    isvc = _one("InferenceService")
    (runtime,) = _one("ServingRuntime")["spec"]["containers"]
    name = isvc["metadata"]["name"]
    return {
        **_environment(runtime, name),
        **_environment(isvc["spec"]["predictor"]["model"], name),
    }


def test_environment_variables_are_real_settings_and_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fields = {f"BNN_{name.upper()}" for name in Settings.model_fields}
    environments = [_environment(c) for _, _, c in _containers()]
    environments.append(_isvc_environment())
    for environment in environments:
        for variable in environment:
            if variable.startswith("BNN_"):
                assert variable in fields, f"{variable} is not a setting"
            else:
                assert variable in AWS_VARIABLES, variable
        # The values load as the service loads them (the same one-line errors).
        for variable in [v for v in os.environ if v.startswith("BNN_")]:
            monkeypatch.delenv(variable)
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        try:
            load_settings()
        except SettingsError as exc:
            pytest.fail(f"{exc}")


def test_every_secret_key_is_used_and_every_reference_exists() -> None:
    secrets = _secret_values()
    used = set()
    containers = [c for _, _, c in _containers()]
    containers.append(_one("InferenceService")["spec"]["predictor"]["model"])
    for container in containers:
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets.get(ref["name"], {}), ref
                used.add((ref["name"], ref["key"]))
    assert used == {(n, k) for n, keys in secrets.items() for k in keys}


def test_kserve_runtime_and_inferenceservice_fit_together() -> None:
    runtime, isvc = _one("ServingRuntime"), _one("InferenceService")
    assert {f["name"] for f in runtime["spec"]["supportedModelFormats"]} == {"bnncore"}
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"  # what KServe merges into
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "bnncore"
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] == "v2"
    environment = _isvc_environment()
    assert environment["BNN_ROLE"] == "inference"
    assert parse_preload(environment["BNN_PRELOAD"]) == (PreloadTarget("mnist", 1),)
    # Without the InferenceService's value, the runtime preloads the model
    # named like the InferenceService.
    assert parse_preload(_environment(container, "quicknet")["BNN_PRELOAD"]) == (
        PreloadTarget("quicknet"),
    )


def _memory_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_memory", DEPLOY / "memory.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _mebibytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", quantity)
    assert match, quantity
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


@contextlib.contextmanager
def _served(settings: Settings) -> Iterator[str]:
    """The real app served by uvicorn on a loopback port (in a thread)."""
    import socket

    import uvicorn

    from bnncore_service.main import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_inferenceservice_memory_follows_from_the_model_estimate(
    tmp_path: Path,
) -> None:
    from bench.load import MNIST_BNN

    memory = _memory_module()
    environment = _isvc_environment()
    batch = int(environment["BNN_MAX_BATCH"])
    workers = int(environment["BNN_INFERENCE_WORKERS"])
    limit = int(environment["BNN_MAX_REQUEST_BYTES"])
    resources = _one("InferenceService")["spec"]["predictor"]["model"]["resources"]
    # The runtime's image (BNN_ROLE=inference) decides the base memory.
    (runtime,) = _one("ServingRuntime")["spec"]["containers"]
    image = "inference" if "bnncore-inference:" in runtime["image"] else "full"
    assert image == "inference" and environment["BNN_ROLE"] == "inference"
    with _served(Settings(data_dir=tmp_path / "a")) as url:
        registered = httpx.post(
            f"{url}/v2/models", json={"name": "mnist", "definition": MNIST_BNN}
        )
        assert registered.status_code == 201, registered.text
        # The command the walkthrough runs, over HTTP against the service.
        out = io.StringIO()  # the command's output (the app logs to stdout)
        with contextlib.redirect_stdout(out):
            options = ["--batch", str(batch), "--workers", str(workers)]
            code = memory.main([url, "mnist:1", *options, "--image", image])
        printed = out.getvalue()
        assert code == 0, printed
        estimate = httpx.post(f"{url}/v2/estimate", json=MNIST_BNN).json()
    sized = memory.sizing({"mnist:1": estimate}, batch, workers, memory.BASE_MIB[image])
    assert memory.render(sized) == printed.rstrip("\n")
    assert f'BNN_MAX_REQUEST_BYTES: "{limit}"' in printed.splitlines()
    assert printed.splitlines()[-1] == (
        "resources.requests.memory = resources.limits.memory: "
        f"{_mebibytes(resources['requests']['memory'])}Mi"
    )
    assert resources["limits"]["memory"] == resources["requests"]["memory"]
    # The service agrees: under that BNN_MAX_REQUEST_BYTES a request of
    # BNN_MAX_BATCH rows fits, and not one row more.
    with _served(Settings(data_dir=tmp_path / "b", max_request_bytes=limit)) as url:
        limited = httpx.post(f"{url}/v2/estimate", json=MNIST_BNN).json()
    assert limited["memory"]["max_batch"] == batch


def _quantity_bytes(quantity: str) -> int:
    return _mebibytes(quantity) * 1024 * 1024


def test_registry_limits_hold_what_the_service_admits() -> None:
    """The registry's memory limit holds the idle process plus every worker
    at BNN_MAX_REQUEST_BYTES, and its data volume every upload in progress."""
    memory = _memory_module()
    deployment = _one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = Settings.model_validate(
        {
            k[4:].lower(): v
            for k, v in _environment(container).items()
            if k.startswith("BNN_")
        }
    )
    requests = settings.inference_workers * settings.max_request_bytes
    limit = _quantity_bytes(container["resources"]["limits"]["memory"])
    assert "bnncore-service:" in container["image"]  # the full image
    assert limit >= memory.BASE_MIB["full"] * memory.MIB + requests
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/data"]
    (volume,) = [
        v
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    ]
    uploads = settings.max_concurrent_uploads * settings.max_weights_bytes
    assert _quantity_bytes(volume["emptyDir"]["sizeLimit"]) >= uploads
    assert str(settings.data_dir) == "/data"


def test_the_kserve_container_serves_its_preloaded_model(
    tmp_path: Path, start_service: Callable[..., Any]
) -> None:
    """The ServingRuntime's container as KServe runs it for the example
    InferenceService (the runtime's environment merged with the
    InferenceService's, ``{{.Name}}`` filled in), on a local store in place
    of the Secret's PostgreSQL and bucket: it becomes ready once its
    preloaded model is loaded, and answers as the full service does."""
    from fastapi.testclient import TestClient

    from bench.load import MNIST_BNN
    from bnncore.export import to_bytes
    from bnncore_service.main import create_app

    environment = _isvc_environment()
    api_keys = environment["BNN_API_KEYS"]
    admin, app = (entry.split(":")[0] for entry in api_keys.split(","))
    data = tmp_path / "data"
    full = Settings(data_dir=data, api_keys=api_keys)
    image = np.random.default_rng(3).random((2, 28, 28, 1), dtype=np.float32)
    # A full replica registers the model and uploads its weights (as push does).
    with TestClient(create_app(full)) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        registered = client.post(
            "/v2/models", json={"name": "mnist", "definition": MNIST_BNN}
        )
        assert registered.status_code == 201, registered.text
        built = client.app.state.runtime.cache.get(registered.json()["content_hash"])
        uploaded = client.put(
            "/v2/models/mnist/versions/1/weights",
            content=to_bytes(built.model),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert uploaded.status_code == 201, uploaded.text
        client.headers["Authorization"] = f"Bearer {app}"
        body = {
            "inputs": [
                {
                    "name": client.get("/v2/models/mnist").json()["inputs"][0]["name"],
                    "shape": list(image.shape),
                    "datatype": "FP32",
                    "data": image.ravel().tolist(),
                }
            ]
        }
        expected = client.post("/v2/models/mnist/infer", json=body).json()
    local = {
        k: v
        for k, v in environment.items()
        if k.startswith("BNN_")
        and k not in ("BNN_DATABASE_URL", "BNN_OBJECT_STORE_URL", "BNN_DATA_DIR")
    }
    assert local["BNN_ROLE"] == "inference" and local["BNN_MIGRATE"] == "off"
    # start_service returns once GET /v2/health/ready answers 200.
    replica = start_service(data, env=local)
    try:
        headers = {"Authorization": f"Bearer {app}"}
        answer = httpx.post(
            f"{replica.base}/v2/models/mnist/infer", json=body, headers=headers
        )
        assert answer.status_code == 200, answer.text
        # Bit for bit on any CPU: the replica applies the stored batch-norm
        # scale and offset, which the unfolded variables give again exactly.
        assert answer.json()["outputs"] == expected["outputs"]
    finally:
        replica.stop()
