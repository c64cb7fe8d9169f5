"""deploy/kubernetes/ rendered by the real ``kubectl kustomize``, validated against the Kubernetes schemas, and held
against the app: every environment variable a setting ticker reads, the probes on the hub's own routes and port, the
drain inside the grace period, the Ingress on public paths only, and the selectors on the pods they are meant for.

``scripts/setup --test`` installs kubectl (Debian's ``kubernetes-client`` where none is present); the schemas ship
with ``kubernetes-validate`` (the ``test`` extras), so nothing here needs the network or a cluster.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices, AliasPath
from pydantic_settings import BaseSettings

from ticker_service.app import create_app
from ticker_service.push.settings import PushSettings
from ticker_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUSTOMIZATIONS = sorted(path.parent for path in KUBERNETES.rglob("kustomization.yaml"))
# The oldest Kubernetes the manifests claim (policy/v1 PDB, autoscaling/v2 HPA) and the newest the schemas know.
SCHEMA_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
# Served by the hubs but not for the internet: Prometheus scrapes each pod, the kubelet probes each pod.
INTERNAL_PATHS = ("/metrics", "/healthz", "/readyz")

Object = dict[str, Any]


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl is missing: run scripts/setup --test"
    return path


def render(directory: Path) -> list[Object]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda path: str(path.relative_to(KUBERNETES)))
def rendered(request: pytest.FixtureRequest) -> list[Object]:
    return render(request.param)


def env_names(model: type[BaseSettings]) -> set[str]:
    """The variables pydantic-settings reads for ``model``: an alias replaces the prefixed field name (and is not
    prefixed itself); names are compared without case, as the models are not case-sensitive."""
    prefix = model.model_config.get("env_prefix", "")
    assert not model.model_config.get("case_sensitive"), "the comparison below assumes case-insensitive settings"
    names: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias or field.alias
        if alias is None:
            names.add(f"{prefix}{name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            assert isinstance(alias, AliasChoices), f"{name}: {alias!r} is not mapped here"
            for choice in alias.choices:
                assert not isinstance(choice, AliasPath), f"{name}: an AliasPath is no environment variable"
                names.add(choice.upper())
    return names


SETTINGS_ENV = env_names(Settings) | env_names(PushSettings)


def find(objects: list[Object], kind: str, name: str | None = None) -> list[Object]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[Object], kind: str, name: str) -> Object:
    found = find(objects, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def containers(objects: list[Object]) -> Iterator[tuple[Object, Object]]:
    for deployment in find(objects, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def source_keys(objects: list[Object], kind: str, name: str) -> dict[str, str]:
    obj = one(objects, kind, name)
    return {**obj.get("data", {}), **obj.get("stringData", {})}


def container_env(objects: list[Object], container: Object) -> dict[str, str]:
    """The container's environment as the kubelet builds it: envFrom sources in order, then env over them."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(source_keys(objects, "ConfigMap", source["configMapRef"]["name"]))
        else:
            env.update(source_keys(objects, "Secret", source["secretRef"]["name"]))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]
        kind, key_ref = (
            ("ConfigMap", ref["configMapKeyRef"]) if "configMapKeyRef" in ref else ("Secret", ref["secretKeyRef"])
        )
        keys = source_keys(objects, kind, key_ref["name"])
        assert key_ref["key"] in keys, f"{var['name']}: {kind}/{key_ref['name']} has no key {key_ref['key']}"
        env[var["name"]] = keys[key_ref["key"]]
    return env


def hub(objects: list[Object]) -> tuple[Object, Object]:
    deployment = one(objects, "Deployment", "ticker-hub")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def labels_match(selector: Object, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# -- rendering and schemas ---------------------------------------------------------------------------------------


def test_every_kustomization_renders_the_whole_set(rendered: list[Object]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(
        ["ConfigMap", "Secret", "Deployment", "Deployment", "Service", "Service", "PodDisruptionBudget"]
        + ["HorizontalPodAutoscaler", "Ingress", "NetworkPolicy", "NetworkPolicy", "NetworkPolicy"]
    )


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendered: list[Object], version: str) -> None:
    for obj in rendered:
        kubernetes_validate.validate(obj, version, strict=True)  # strict: an unknown (misspelt) field is an error


def test_the_validator_refuses_a_misspelt_field(rendered: list[Object]) -> None:
    """The check above is not vacuous: the schemas are there offline and strict mode reads them."""
    deployment, _ = hub(rendered)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, SCHEMA_VERSIONS[-1], strict=True)


# -- settings ----------------------------------------------------------------------------------------------------


def test_every_environment_variable_is_a_setting_ticker_reads(rendered: list[Object]) -> None:
    seen: set[str] = set()
    for deployment, container in containers(rendered):
        env = container_env(rendered, container)
        unknown = sorted(name for name in env if name.upper() not in SETTINGS_ENV)
        assert not unknown, f"{deployment['metadata']['name']}/{container['name']}: ticker reads no {unknown}"
        seen |= set(env)
    # Every key of the ConfigMap and the Secret reaches some container, so none of them is a dead setting either.
    for kind in ("ConfigMap", "Secret"):
        for obj in find(rendered, kind):
            keys = set(source_keys(rendered, kind, obj["metadata"]["name"]))
            assert keys <= seen, f"{kind}/{obj['metadata']['name']}: {sorted(keys - seen)} reach no container"
            assert {k.upper() for k in keys} <= SETTINGS_ENV


def test_the_settings_parse_in_every_container(rendered: list[Object], monkeypatch: pytest.MonkeyPatch) -> None:
    """The values, not only the names: the models accept what each container is given."""
    for _, container in containers(rendered):
        with monkeypatch.context() as env:
            for name in list(SETTINGS_ENV):
                env.delenv(name, raising=False)
            for name, value in container_env(rendered, container).items():
                env.setenv(name, value)
            settings, push = Settings(), PushSettings()
            assert not settings.embedded and settings.redis_sentinels, "the pods must use Redis through Sentinel"
            assert push.vapid_subject.startswith("mailto:")


def test_secret_values_are_placeholders(rendered: list[Object]) -> None:
    for secret in find(rendered, "Secret"):
        for key, value in source_keys(rendered, "Secret", secret["metadata"]["name"]).items():
            assert "REPLACE-ME" in value, f"{key} looks like a real credential"


# -- the hub against the app -------------------------------------------------------------------------------------


def app_paths() -> list[str]:
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    return [route.path for route in app.routes]  # type: ignore[attr-defined]


def test_probes_reach_the_hubs_own_routes_and_port(rendered: list[Object]) -> None:
    _, container = hub(rendered)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    command = container["command"]
    assert command[:2] == ["ticker", "hub"]
    assert int(command[command.index("--port") + 1]) == ports["http"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # the kubelet probes the pod's address
    paths = app_paths()
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and path in paths
        assert ports.get(get["port"], get["port"]) == ports["http"]


def test_the_grace_period_covers_the_prestop_and_the_1012_drain(rendered: list[Object]) -> None:
    for deployment, container in containers(rendered):
        spec = deployment["spec"]["template"]["spec"]
        env = container_env(rendered, container)
        shutdown = Settings.model_validate({"shutdown_seconds": env["TICKER_SHUTDOWN_SECONDS"]}).shutdown_seconds
        pre_stop = 0.0
        if "lifecycle" in container:
            sleep = container["lifecycle"]["preStop"]["exec"]["command"]
            assert sleep[0] == "sleep"
            pre_stop = float(sleep[1])
        if deployment["metadata"]["name"] == "ticker-hub":
            # The endpoint goes before the hub stops taking readers: a sleep long enough for controllers to see it.
            assert pre_stop >= 3
        assert spec["terminationGracePeriodSeconds"] >= pre_stop + shutdown + 3, deployment["metadata"]["name"]


def test_every_pod_runs_as_a_non_root_user_without_privileges(rendered: list[Object]) -> None:
    for deployment, container in containers(rendered):
        pod = deployment["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def test_the_workers_are_two(rendered: list[Object]) -> None:
    worker = one(rendered, "Deployment", "ticker-worker")
    assert worker["spec"]["replicas"] == 2
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"] == ["ticker", "worker"]


# -- selectors and references ------------------------------------------------------------------------------------


def test_selectors_pick_the_pods_they_are_for(rendered: list[Object]) -> None:
    hub_deployment, hub_container = hub(rendered)
    hub_labels = hub_deployment["spec"]["template"]["metadata"]["labels"]
    worker_labels = one(rendered, "Deployment", "ticker-worker")["spec"]["template"]["metadata"]["labels"]
    assert labels_match(hub_deployment["spec"]["selector"], hub_labels)
    assert labels_match(one(rendered, "PodDisruptionBudget", "ticker-hub")["spec"]["selector"], hub_labels)
    service = one(rendered, "Service", "ticker-hub")
    assert labels_match({"matchLabels": service["spec"]["selector"]}, hub_labels)
    assert not labels_match({"matchLabels": service["spec"]["selector"]}, worker_labels)
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in hub_container["ports"]}
    hpa = one(rendered, "HorizontalPodAutoscaler", "ticker-hub")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ticker-hub"}
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert hpa["spec"]["minReplicas"] <= hub_deployment["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    anti = hub_deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert labels_match(term["podAffinityTerm"]["labelSelector"], hub_labels)

    policies = {p["metadata"]["name"]: p["spec"] for p in find(rendered, "NetworkPolicy")}
    assert labels_match(policies["ticker-hub"]["podSelector"], hub_labels)
    assert labels_match(policies["ticker-worker"]["podSelector"], worker_labels)
    # Redis: reachable from hubs and workers (and Redis itself), from nothing else.
    sources = [peer["podSelector"] for rule in policies["ticker-redis"]["ingress"] for peer in rule["from"]]
    assert all(set(peer) == {"podSelector"} for rule in policies["ticker-redis"]["ingress"] for peer in rule["from"])
    assert any(labels_match(s, hub_labels) for s in sources) and any(labels_match(s, worker_labels) for s in sources)
    others = [s for s in sources if not labels_match(s, hub_labels) and not labels_match(s, worker_labels)]
    assert others == [policies["ticker-redis"]["podSelector"]]
    # Hubs: only from the ingress controller, on the hub's port.
    (rule,) = policies["ticker-hub"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [p["containerPort"] for p in hub_container["ports"]]
    # Workers: push services over HTTPS, outside the private ranges.
    https = [r for r in policies["ticker-worker"]["egress"] if [p["port"] for p in r["ports"]] == [443]]
    (rule,) = https
    blocks = {peer["ipBlock"]["cidr"]: set(peer["ipBlock"].get("except", ())) for peer in rule["to"]}
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= blocks["0.0.0.0/0"]
    assert "fc00::/7" in blocks.get("::/0", {"fc00::/7"})


def test_the_ingress_serves_readers_unbuffered_and_only_public_paths(rendered: list[Object]) -> None:
    ingress = one(rendered, "Ingress", "ticker")
    notes = ingress["metadata"]["annotations"]
    heartbeat = Settings().heartbeat_seconds
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # SSE events go out as written
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):  # idle readers between heartbeats stay
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 100 * heartbeat
    assert ingress["spec"]["ingressClassName"] == "nginx"
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert hosts == {host for tls in ingress["spec"]["tls"] for host in tls["hosts"]}
    env = container_env(rendered, hub(rendered)[1])
    assert {f"https://{host}" for host in hosts} == {env["TICKER_PUBLIC_URL"], env["TICKER_ALLOWED_ORIGINS"]}

    routes = app_paths()
    patterns = [re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$") for path in routes]
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            path, kind = entry["path"], entry["pathType"]
            assert entry["backend"]["service"] == {"name": "ticker-hub", "port": {"name": "http"}}
            if kind == "Exact":
                assert any(p.match(path) for p in patterns), f"{path}: no such route"
            else:
                assert kind == "Prefix" and any(route.startswith(path + "/") for route in routes), path
            for internal in INTERNAL_PATHS:
                covered = internal == path if kind == "Exact" else (internal + "/").startswith(path.rstrip("/") + "/")
                assert not covered, f"{internal} would be public through {path}"
    for reader_path in ("/v1/stream", "/v1/events"):
        assert any(
            e["pathType"] == "Prefix" and reader_path.startswith(e["path"] + "/")
            for rule in ingress["spec"]["rules"]
            for e in rule["http"]["paths"]
        )
