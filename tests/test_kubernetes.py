"""deploy/kubernetes: valid for the Kubernetes API, and as hardened as SECURITY.md says.

There is no cluster and no kubectl here. The two variants (the base, shared mode, and
overlays/pool) are rendered as `kubectl apply -k` renders them, by `render` below, which
understands exactly the kustomization fields the manifests use and fails on any other, so a
new field cannot be silently ignored. Each object is then validated offline against the
strict JSON schemas (unknown fields refused) that the `kubernetes-validate` package ships for
each Kubernetes minor release, and the properties that keep snippets contained are asserted
one by one, so that a careless edit fails here rather than in someone's cluster.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sandbox_mcp.config import OPTIONS, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "kubernetes"
BASE = DEPLOY / "base"
POOL = DEPLOY / "overlays" / "pool"

# The oldest release the manifests promise to work on, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

MIB = 1024 * 1024
# The server itself, the warm Python template, and the runs on standby (two Python, two
# JavaScript: node), beyond the runs.
SERVER_MEMORY = 256 * MIB
# Beside the workdirs under /tmp: the run root's lock, the uid pool's lock files.
TMP_HEADROOM = 256 * MIB

# Settings of the HTTP transport, which sandbox_mcp/config.py gains with that transport.
HTTP_VARIABLES = {
    "SANDBOX_TRANSPORT",
    "SANDBOX_HOST",
    "SANDBOX_PORT",
    "SANDBOX_AUTH_TOKEN",
    "SANDBOX_AUTH_TOKEN_FILE",
    "SANDBOX_ALLOWED_HOSTS",
    "SANDBOX_ALLOWED_ORIGINS",
}

Object = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------


def render(directory: Path) -> list[Object]:
    """The objects `kubectl apply -k directory` would send, for the fields used here.

    A kustomization may list `resources` (files, or folders holding a kustomization) and
    `patches`, each a file of RFC 6902 operations with a `target` naming kind and name.
    Anything else (generators, name prefixes, labels, images, ...) fails the test: teach this
    function the new field first, or it would validate something other than what is applied.
    """
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"{directory}: render() does not apply {sorted(unknown)}"

    objects: list[Object] = []
    for entry in kustomization["resources"]:
        path = directory / entry
        if path.is_dir():
            objects.extend(render(path))
        else:
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)

    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path", "target"}, f"{directory}: unsupported patch {patch}"
        assert set(patch["target"]) == {"kind", "name"}, f"unsupported target {patch['target']}"
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        targets = [
            obj
            for obj in objects
            if obj["kind"] == patch["target"]["kind"]
            and obj["metadata"]["name"] == patch["target"]["name"]
        ]
        assert len(targets) == 1, f"patch {patch['path']} matches {len(targets)} objects"
        for operation in operations:
            apply_operation(targets[0], operation)
    return objects


def apply_operation(document: Object, operation: Object) -> None:
    """Apply one RFC 6902 operation (`test`, `replace`, `add` or `remove`) in place."""
    *parents, last = [
        part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
    ]
    container: Any = document
    for part in parents:
        container = container[int(part) if isinstance(container, list) else part]
    key: Any = int(last) if isinstance(container, list) and last != "-" else last

    match operation["op"]:
        case "test":
            assert container[key] == operation["value"], f"test failed: {operation}"
        case "replace":
            assert (key in container) if isinstance(container, dict) else key < len(container)
            container[key] = operation["value"]
        case "add" if isinstance(container, list):
            container.insert(len(container) if key == "-" else key, operation["value"])
        case "add":
            container[key] = operation["value"]
        case "remove":
            del container[key]
        case other:
            raise AssertionError(f"render() does not apply the JSON patch operation {other!r}")


VARIANTS = {"shared": render(BASE), "pool": render(POOL)}
EACH_VARIANT = [pytest.param(mode, objects, id=mode) for mode, objects in VARIANTS.items()]


def the(objects: list[Object], kind: str) -> Object:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(objects: list[Object]) -> Object:
    return the(objects, "Deployment")["spec"]["template"]["spec"]


def server(objects: list[Object]) -> Object:
    containers = pod_spec(objects)["containers"]
    assert [c["name"] for c in containers] == ["sandbox-mcp"]
    return containers[0]


def env(container: Object) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


def quantity(text: str | int) -> float:
    """A Kubernetes quantity (`3Gi`, `768Mi`, `500m`, `4`) as a number of bytes or cores."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "m": 1e-3, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


# --- the schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_every_object_is_valid_against_the_strict_kubernetes_schema(
    mode: str, objects: list[Object], version: str
) -> None:
    assert {obj["kind"] for obj in objects} == {
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    }
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{mode}: {obj['kind']} is invalid for Kubernetes {version}: {error}")


def test_the_schemas_catch_a_misspelt_field() -> None:
    deployment = copy.deepcopy(the(VARIANTS["shared"], "Deployment"))
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_everything_lives_in_the_one_namespace(mode: str, objects: list[Object]) -> None:
    namespace = the(objects, "Namespace")["metadata"]["name"]
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["kind"]


# --- the container's hardening ----------------------------------------------------------------


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_every_container_is_hardened(mode: str, objects: list[Object]) -> None:
    spec = pod_spec(objects)
    pod_context = spec["securityContext"]
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context.get("privileged", False) is False
        assert context["capabilities"]["drop"] == ["ALL"]
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile"))
        assert seccomp == {"type": "RuntimeDefault"}
        assert "procMount" not in context
        assert "runAsUser" not in context and "runAsNonRoot" not in context, (
            "the identity is set once, for the pod"
        )
        added = sorted(context["capabilities"].get("add", []))
        if mode == "pool":
            assert added == ["SETGID", "SETUID"]
        else:
            assert added == []


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_identity_matches_the_mode(mode: str, objects: list[Object]) -> None:
    context = pod_spec(objects)["securityContext"]
    settings = env(server(objects))
    assert settings["SANDBOX_IDENTITY"] == mode
    if mode == "shared":
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == context["runAsGroup"] == 65534
    else:
        assert context["runAsUser"] == context["runAsGroup"] == 0
        assert context["runAsNonRoot"] is False


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_pod_reaches_nothing_of_the_node_or_the_api(mode: str, objects: list[Object]) -> None:
    spec = pod_spec(objects)
    assert spec["automountServiceAccountToken"] is False
    account = the(objects, "ServiceAccount")
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(field, False), field
    for volume in spec.get("volumes", []):
        assert set(volume) == {"name", "emptyDir"}, f"volume {volume['name']}: only emptyDir"


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_pod_security_admission_enforces_the_strictest_profile_the_mode_allows(
    mode: str, objects: list[Object]
) -> None:
    labels = the(objects, "Namespace")["metadata"]["labels"]
    expected = "restricted" if mode == "shared" else "baseline"
    assert labels["pod-security.kubernetes.io/enforce"] == expected


def test_the_pool_overlay_changes_the_identity_and_nothing_else() -> None:
    shared = copy.deepcopy(VARIANTS["shared"])
    pool = copy.deepcopy(VARIANTS["pool"])
    for objects in (shared, pool):
        the(objects, "Namespace")["metadata"]["labels"].pop("pod-security.kubernetes.io/enforce")
        identity = pod_spec(objects)["securityContext"]
        for field in ("runAsUser", "runAsGroup", "runAsNonRoot"):
            identity.pop(field)
        container = server(objects)
        container["securityContext"]["capabilities"].pop("add", None)
        container["env"] = [item for item in container["env"] if item["name"] != "SANDBOX_IDENTITY"]
    assert shared == pool


# --- the run root, the token and the settings -------------------------------------------------


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_run_root_is_on_a_memory_volume_with_a_size_limit(
    mode: str, objects: list[Object]
) -> None:
    spec = pod_spec(objects)
    settings = env(server(objects))
    mounts = {m["mountPath"]: m for m in server(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    tmp = volumes[mounts["/tmp"]["name"]]["emptyDir"]
    assert tmp["medium"] == "Memory"
    assert quantity(tmp["sizeLimit"]) > 0
    assert not mounts["/tmp"].get("readOnly", False)
    # The run root and its lock beside it (<run root>.lock) both on that volume.
    assert Path(settings["SANDBOX_RUN_ROOT"]).parent == Path("/tmp")


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_memory_and_tmp_are_sized_for_the_runs_the_server_allows(
    mode: str, objects: list[Object]
) -> None:
    container = server(objects)
    settings = env(container)
    runs = int(settings["SANDBOX_MAX_CONCURRENT_RUNS"])
    run_memory = int(settings["SANDBOX_MEMORY_MB"]) * MIB
    run_disk = int(settings["SANDBOX_MAX_DISK_BYTES"])
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    tmp_size = quantity(volumes["tmp"]["emptyDir"]["sizeLimit"])
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]

    assert tmp_size >= runs * run_disk + TMP_HEADROOM
    # What the runs write to /tmp is charged to the container's memory as well.
    assert quantity(limits["memory"]) >= runs * run_memory + tmp_size + SERVER_MEMORY
    # Requested as much as allowed: a node short of memory must not evict a replica, whose
    # sessions would go with it.
    assert quantity(requests["memory"]) == quantity(limits["memory"])
    assert quantity(requests["cpu"]) > 0, "the autoscaler measures CPU against the request"
    assert quantity(limits["cpu"]) >= quantity(requests["cpu"])


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_a_stopped_pod_has_time_to_finish_its_longest_run(mode: str, objects: list[Object]) -> None:
    settings = env(server(objects))
    grace = pod_spec(objects)["terminationGracePeriodSeconds"]
    # On SIGTERM the server gives its runs SANDBOX_SHUTDOWN_GRACE, then ends them and exits.
    drain = float(settings["SANDBOX_SHUTDOWN_GRACE"])
    assert grace > drain > float(settings["SANDBOX_MAX_TIMEOUT"])


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_token_comes_from_a_secret_through_the_environment_only(
    mode: str, objects: list[Object]
) -> None:
    container = server(objects)
    settings = env(container)
    assert settings["SANDBOX_AUTH_TOKEN"] == {
        "secretKeyRef": {"name": "sandbox-mcp-auth", "key": "token"}
    }
    # In shared mode a mounted file would be readable by every snippet (same uid).
    assert "SANDBOX_AUTH_TOKEN_FILE" not in settings
    assert all("secret" not in volume for volume in pod_spec(objects)["volumes"])
    assert all(obj["kind"] != "Secret" for obj in objects), "no token is shipped"


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_every_setting_is_one_the_server_knows_with_a_value_it_accepts(
    mode: str, objects: list[Object]
) -> None:
    options = {option.env: option for option in OPTIONS}
    settings = env(server(objects))
    for name, value in settings.items():
        assert name in options or name in HTTP_VARIABLES, f"unknown setting {name}"
        if name in options and isinstance(value, str):
            options[name].parse(value)

    # All together, as the server reads them at startup, the Secret's token stood in for.
    environment = {name: value for name, value in settings.items() if isinstance(value, str)}
    environment["SANDBOX_AUTH_TOKEN"] = "0123456789abcdef" * 4
    loaded, _ = Settings.load([], environment)
    assert loaded.describe()["max_concurrent_runs"] == int(settings["SANDBOX_MAX_CONCURRENT_RUNS"])
    assert loaded.adjustments() == []


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_server_listens_on_the_container_port_for_the_services_names(
    mode: str, objects: list[Object]
) -> None:
    container = server(objects)
    settings = env(container)
    service = the(objects, "Service")
    [port] = container["ports"]
    [service_port] = service["spec"]["ports"]

    assert settings["SANDBOX_TRANSPORT"] == "http"
    # Every interface of the pod: the Service and the kubelet's probes come from outside it.
    assert settings["SANDBOX_HOST"] == "0.0.0.0"  # noqa: S104
    assert int(settings["SANDBOX_PORT"]) == port["containerPort"]
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    hosts = settings["SANDBOX_ALLOWED_HOSTS"].split(",")
    for host in (name, f"{name}.{namespace}", f"{name}.{namespace}.svc.cluster.local"):
        assert f"{host}:{service_port['port']}" in hosts


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_image_is_the_release_of_this_version(mode: str, objects: list[Object]) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = server(objects)["image"]
    assert re.fullmatch(rf"ghcr\.io/[^/]+/sandbox-mcp:{re.escape(version)}", image), image
    assert "ghcr.io/" in (ROOT / ".github" / "workflows" / "release.yml").read_text()


# --- probes, Service, NetworkPolicy, PDB, HPA ---------------------------------------------------


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_probes_ask_the_health_endpoints_on_the_servers_port(
    mode: str, objects: list[Object]
) -> None:
    container = server(objects)
    [port] = container["ports"]
    for probe, path in (
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        action = container[probe]["httpGet"]
        assert action["path"] == path, probe
        assert action["port"] in (port["name"], port["containerPort"]), probe
        assert action.get("scheme", "HTTP") == "HTTP"


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_service_and_its_port_reach_the_deployments_pods(
    mode: str, objects: list[Object]
) -> None:
    deployment = the(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels)
    service = the(objects, "Service")
    assert selects(service["spec"]["selector"], pod_labels)
    [port] = server(objects)["ports"]
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_network_policy_denies_all_egress_and_admits_only_the_port(
    mode: str, objects: list[Object]
) -> None:
    policy = the(objects, "NetworkPolicy")["spec"]
    pod_labels = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    [port] = server(objects)["ports"]

    assert selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["egress"] == []
    for rule in policy["ingress"]:
        assert [(p["port"], p.get("protocol", "TCP")) for p in rule["ports"]] in (
            [(port["name"], "TCP")],
            [(port["containerPort"], "TCP")],
        )


@pytest.mark.parametrize(("mode", "objects"), EACH_VARIANT)
def test_the_disruption_budget_and_the_autoscaler_target_the_deployment(
    mode: str, objects: list[Object]
) -> None:
    deployment = the(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = the(objects, "PodDisruptionBudget")["spec"]
    scaler = the(objects, "HorizontalPodAutoscaler")["spec"]

    assert selects(budget["selector"]["matchLabels"], pod_labels)
    assert scaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert [metric["resource"]["name"] for metric in scaler["metrics"]] == ["cpu"]
    # Two at least, so that the budget lets a node drain without taking the service down.
    assert scaler["minReplicas"] >= 2
    assert budget["maxUnavailable"] < scaler["minReplicas"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


# --- the examples ---------------------------------------------------------------------------


def test_the_ingress_example_is_valid_and_pins_sessions_with_a_cookie() -> None:
    [ingress] = yaml.safe_load_all((DEPLOY / "examples" / "ingress-nginx.yaml").read_text())
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(ingress, version, strict=True)
    service = the(VARIANTS["shared"], "Service")
    assert ingress["metadata"]["namespace"] == service["metadata"]["namespace"]
    [rule] = ingress["spec"]["rules"]
    [path] = rule["http"]["paths"]
    assert path["path"] == "/mcp"
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"name": service["spec"]["ports"][0]["name"]},
    }
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert annotations["nginx.ingress.kubernetes.io/affinity-mode"] == "persistent"
    # A hash on the session header sends a session to a replica that never created it: the
    # `initialize` that creates it has no id yet (README, "Scaling out on Kubernetes").
    assert "nginx.ingress.kubernetes.io/upstream-hash-by" not in annotations
    # Room for the largest snippet the server accepts, escaped in JSON.
    body = quantity(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].upper() + "i")
    options = {option.env: option for option in OPTIONS}
    assert body >= 2 * options["SANDBOX_MAX_CODE_BYTES"].default
