"""The Helm chart deploy/helm/llmner, rendered by real Helm and validated without a cluster.

- Rendering and linting: Helm's own Go SDK (helm-python-sdk bundles libhelm_c built from the
  official helm.sh/helm/v4 packages), so template functions, `fail`, and values merging behave
  exactly as `helm template` does.
- Core objects: the Kubernetes OpenAPI JSON schemas of kubernetes-validate, strict mode (unknown
  fields fail), for the oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the
  newest the package ships.
- KEDA ScaledObject / TriggerAuthentication and the Prometheus Operator ServiceMonitor: the
  pydantic models cloudcoil generates from those projects' CRDs, plus a round trip that rejects
  fields the CRD does not define; KEDA trigger metadata against the scalers' documented keys.
- Agreement with the workers: queue, stream and variable names from celeryconfig.py's contract
  and workers.settings, metric names from workers/metrics.py, CLI arguments of the loader.
"""

from __future__ import annotations

import copy
import re
from functools import cache
from typing import Any

import jsonschema
import pytest
import yaml
from test_deploy import (
    HEALTH_COMMAND,
    IMAGE_REPOSITORIES,
    LOADER_MODULE,
    ROOT,
    contract_variables,
    exported_metrics,
    project_version,
    queue_of,
    settings_defaults,
)

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (real Helm) is not installed: pip install -e '.[dev]'")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

CHART = ROOT / "deploy" / "helm" / "llmner"
VALUES_FILES = ["values.yaml", "values-dev.yaml", "values-prod.yaml"]
COMPONENTS = ["ingest", "infer", "loader", "bridge"]
CELERY_COMPONENTS = {"ingest": "LLMNER_INGEST_QUEUE", "infer": "LLMNER_INFER_QUEUE"}

# Metadata keys of the KEDA scalers used here (keda.sh docs: scalers/redis-lists, redis-streams,
# prometheus). KEDA passes metadata through as map[string]string; the scalers read these keys.
REDIS_CONNECTION_KEYS = {"address", "host", "port", "addressFromEnv", "hostFromEnv", "portFromEnv", "databaseIndex",
                         "enableTLS", "unsafeSsl", "usernameFromEnv", "passwordFromEnv"}
KEDA_TRIGGER_KEYS = {
    "redis": {"required": {"listName"}, "optional": {*REDIS_CONNECTION_KEYS, "listLength", "activationListLength"}},
    "redis-streams": {"required": {"stream", "consumerGroup"},
                      "optional": {*REDIS_CONNECTION_KEYS, "pendingEntriesCount", "streamLength", "lagCount",
                                   "activationLagCount"}},
    "prometheus": {"required": {"serverAddress", "query", "threshold"},
                   "optional": {"activationThreshold", "namespace", "customHeaders", "ignoreNullValues",
                                "queryParameters", "unsafeSsl", "timeout"}},
}
KEDA_AUTH_PARAMETERS = {"password", "username", "ca", "cert", "key", "tls"}


# -- rendering ----------------------------------------------------------------------------------

def values_of(values_file: str) -> dict:
    return {} if values_file == "values.yaml" else yaml.safe_load((CHART / values_file).read_text())


def render(values: dict, release: str = "llmner", namespace: str = "llmner") -> list[dict]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=release, namespace=namespace)
    objects = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__source__"] = path
                objects.append(doc)
    return objects


@cache
def rendered(values_file: str) -> tuple[dict, ...]:
    return tuple(render(values_of(values_file)))


def by_kind(objects: tuple[dict, ...] | list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def deployment(objects: tuple[dict, ...], component: str) -> dict:
    return by_kind(objects, "Deployment")[f"llmner-{component}"]


def container(dep: dict) -> dict:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def configmap_env(objects: tuple[dict, ...]) -> dict[str, str]:
    (cm,) = by_kind(objects, "ConfigMap").values()
    return cm["data"]


def strip(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k != "__source__"}


def with_values(base: str, **overrides: Any) -> dict:
    """values_of(base) with dotted-path overrides, e.g. {"infer.keda.enabled": True}."""
    values = copy.deepcopy(values_of(base))
    for dotted, value in overrides.items():
        node = values
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return values


def chart_kube_version() -> str:
    spec = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    return re.search(r"(\d+\.\d+)", spec).group(1)


# -- lint and schemas ---------------------------------------------------------------------------

def test_helm_lint_is_clean() -> None:
    for values_file in VALUES_FILES:
        result = helm.lint(str(CHART), values_of(values_file), strict=True, namespace="llmner")
        assert result["errors"] == [], result
        serious = [m for m in result["messages"] if m["severity"] >= 2]  # 1 info, 2 warning, 3 error
        assert serious == [], serious


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_core_objects_match_kubernetes_schemas(values_file: str) -> None:
    objects = rendered(values_file)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "ConfigMap", "ServiceAccount"} <= kinds
    versions = [chart_kube_version(), str(kubernetes_validate.latest_version())]
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/")):
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(strip(obj), version, strict=True)
            except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
                pytest.fail(f"{values_file}: {obj['kind']}/{obj['metadata']['name']} ({obj['__source__']}) "
                            f"invalid for Kubernetes {version}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 5


def _roundtrip_unknown_fields(model_cls: type, obj: dict) -> list[str]:
    """Paths present in ``obj`` that the CRD model dropped (the models ignore unknown fields)."""
    dumped = model_cls.model_validate(obj).model_dump(by_alias=True, exclude_unset=True, mode="json")
    missing: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict):
            for k, v in a.items():
                if not isinstance(b, dict) or k not in b:
                    missing.append(f"{path}.{k}")
                else:
                    walk(v, b[k], f"{path}.{k}")
        elif isinstance(a, list) and isinstance(b, list):
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{path}[{i}]")

    walk(obj, dumped, "")
    return missing


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_custom_resources_match_their_crds(values_file: str) -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from cloudcoil.models.prometheus_operator.v1 import PrometheusRule, ServiceMonitor

    models = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication,
              "ServiceMonitor": ServiceMonitor, "PrometheusRule": PrometheusRule}
    objects = rendered(values_file)
    if values_file == "values-prod.yaml":
        assert set(models) <= {o["kind"] for o in objects}
    for obj in objects:
        if obj["kind"] not in models:
            continue
        body = strip(obj)
        unknown = _roundtrip_unknown_fields(models[obj["kind"]], body)
        assert unknown == [], f"{values_file}: {obj['kind']}/{obj['metadata']['name']} has fields its CRD lacks: {unknown}"
        if obj["kind"] == "ScaledObject":
            for trig in body["spec"]["triggers"]:
                keys = KEDA_TRIGGER_KEYS[trig["type"]]
                md = trig["metadata"]
                assert keys["required"] <= set(md), f"{trig['type']} trigger lacks {keys['required'] - set(md)}"
                assert set(md) <= keys["required"] | keys["optional"], f"unknown {trig['type']} keys {set(md) - keys['required'] - keys['optional']}"
                assert all(isinstance(v, str) for v in md.values()), "KEDA trigger metadata values must be strings"
        if obj["kind"] == "TriggerAuthentication":
            for ref in body["spec"]["secretTargetRef"]:
                assert ref["parameter"] in KEDA_AUTH_PARAMETERS
        if obj["kind"] == "PrometheusRule":
            # The shared rule file, unchanged by the template.
            assert body["spec"] == yaml.safe_load((CHART / "files" / "alerts.yml").read_text())


def test_crd_check_catches_an_unknown_field() -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    (so,) = [strip(o) for o in rendered("values-dev.yaml") if o["kind"] == "ScaledObject" and "infer" in o["metadata"]["name"]]
    broken = copy.deepcopy(so)
    broken["spec"]["cooldownPeriods"] = 30
    assert _roundtrip_unknown_fields(ScaledObject, broken) == [".spec.cooldownPeriods"]
    broken = copy.deepcopy(so)
    broken["spec"]["minReplicaCount"] = "zero"
    with pytest.raises(ValueError):
        ScaledObject.model_validate(broken)


# -- references inside the release -------------------------------------------------------------

def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_references_resolve_within_the_release(values_file: str) -> None:
    objects = rendered(values_file)
    values = values_of(values_file)
    deployments = by_kind(objects, "Deployment")
    secrets = set(by_kind(objects, "Secret"))
    external_secret = (values.get("redis") or {}).get("existingSecret")
    if external_secret:
        secrets.add(external_secret)
    configmaps = set(by_kind(objects, "ConfigMap"))
    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for name, dep in deployments.items():
        assert _matches(dep["spec"]["selector"]["matchLabels"], pod_labels[name])
        pod = dep["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in by_kind(objects, "ServiceAccount")
        for c in pod["containers"]:
            for ref in c.get("envFrom", []):
                assert ref["configMapRef"]["name"] in configmaps
            for env in c.get("env", []):
                src = env.get("valueFrom", {}).get("secretKeyRef")
                if src:
                    assert src["name"] in secrets, f"{name}: Secret {src['name']} is neither rendered nor existingSecret"
            volumes = {v["name"] for v in pod["volumes"]}
            assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes
    for svc in by_kind(objects, "Service").values():
        targets = [n for n, labels in pod_labels.items() if _matches(svc["spec"]["selector"], labels)]
        assert len(targets) == 1, f"Service {svc['metadata']['name']} selects {targets}"
        port_names = {p["name"] for p in container(deployments[targets[0]]).get("ports", [])}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    for pdb in by_kind(objects, "PodDisruptionBudget").values():
        assert sum(_matches(pdb["spec"]["selector"]["matchLabels"], lb) for lb in pod_labels.values()) == 1
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for so in by_kind(objects, kind).values():
            target = so["spec"]["scaleTargetRef"]["name"]
            assert target in deployments
            assert "replicas" not in deployments[target]["spec"], f"{target}: autoscaled, yet the Deployment sets replicas"
            for trig in so["spec"].get("triggers", []):
                if "authenticationRef" in trig:
                    assert trig["authenticationRef"]["name"] in by_kind(objects, "TriggerAuthentication")
    for ta in by_kind(objects, "TriggerAuthentication").values():
        for ref in ta["spec"]["secretTargetRef"]:
            assert ref["name"] in secrets or ref["name"] == values["redis"]["tls"]["caSecret"]
    services = list(by_kind(objects, "Service").values())
    for sm in by_kind(objects, "ServiceMonitor").values():
        selected = [s for s in services if _matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert {s["metadata"]["name"] for s in selected} == {"llmner-ingest-metrics", "llmner-infer-metrics"}
        for ep in sm["spec"]["endpoints"]:
            assert all(ep["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)


# -- agreement with the workers -----------------------------------------------------------------

@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_configmap_is_the_celeryconfig_contract(values_file: str) -> None:
    objects = rendered(values_file)
    env = configmap_env(objects)
    contract = contract_variables()
    defaults = settings_defaults()
    assert set(env) <= set(contract), f"not in the celeryconfig.py contract: {set(env) - set(contract)}"
    assert "LLMNER_REDIS_PASSWORD" not in env, "the password belongs in the Secret"
    assert re.fullmatch(r"rediss?://[A-Za-z0-9.-]+:\d+/\d+", env["LLMNER_REDIS_URL"])
    # Names of queues, streams and keys are shared with producers and loaders: the chart keeps the
    # workers' defaults in every values file.
    for name in ("LLMNER_INGEST_QUEUE", "LLMNER_INFER_QUEUE", "LLMNER_INBOX_STREAM", "LLMNER_RESULTS_STREAM",
                 "LLMNER_DEAD_STREAM", "LLMNER_KEY_PREFIX", "LLMNER_CHUNK_LIST", "LLMNER_METRICS_PORT"):
        assert env[name] == defaults[name], f"{values_file}: {name}={env[name]} but the workers default to {defaults[name]}"
    for name in ("LLMNER_INFER_BATCH_SIZE", "LLMNER_MAX_DELIVERIES", "LLMNER_VISIBILITY_TIMEOUT",
                 "LLMNER_SOFT_SHUTDOWN_TIMEOUT", "LLMNER_MAX_DOC_CHARS"):
        assert env[name].isdigit() and int(env[name]) > 0
    if values_file == "values.yaml":
        for name in ("LLMNER_INFER_BATCH_SIZE", "LLMNER_MAX_DELIVERIES", "LLMNER_VISIBILITY_TIMEOUT", "LLMNER_MAX_DOC_CHARS"):
            assert env[name] == defaults[name]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_workers_run_as_agreed(values_file: str) -> None:
    objects = rendered(values_file)
    env = configmap_env(objects)
    soft = int(env["LLMNER_SOFT_SHUTDOWN_TIMEOUT"])
    metrics_port = int(env["LLMNER_METRICS_PORT"])
    for component, queue_var in CELERY_COMPONENTS.items():
        dep = deployment(objects, component)
        c = container(dep)
        assert c["command"][:4] == ["celery", "-A", "workers", "worker"]
        assert queue_of(c["command"]) == env[queue_var]
        assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > soft
        assert {"name": "REMAP_SIGTERM", "value": "SIGQUIT"} in c["env"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["exec"]["command"] == HEALTH_COMMAND
        assert [p["containerPort"] for p in c["ports"] if p["name"] == "metrics"] == [metrics_port]
        image = c["image"]
        kind = "gpu" if component == "infer" else "cpu"
        repo, tag = image.rsplit(":", 1)
        assert repo.endswith(IMAGE_REPOSITORIES[kind]) and tag == project_version()
    infer = container(deployment(objects, "infer"))
    assert infer["command"][infer["command"].index("--pool") + 1] == "solo"
    assert infer["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert infer["resources"]["requests"]["nvidia.com/gpu"] == 1
    for component in ("loader", "bridge"):
        c = container(deployment(objects, component))
        assert c["image"].rsplit(":", 1)[0].endswith(IMAGE_REPOSITORIES["cpu"])
        assert "livenessProbe" not in c, f"{component}: workers.health needs loaded models, which {component} never has"
    loader = container(deployment(objects, "loader"))
    assert loader["command"][:3] == ["python", "-m", LOADER_MODULE]
    assert container(deployment(objects, "bridge"))["command"] == ["python", "-m", "workers.inbox"]
    sec = deployment(objects, "infer")["spec"]["template"]["spec"]["securityContext"]
    assert sec["runAsNonRoot"] is True and sec["runAsUser"] > 0


def test_loader_and_bridge_arguments_match_their_clis() -> None:
    import argparse
    import ast

    src = (ROOT / "workers" / "loaders" / "sqlite_kg.py").read_text()
    parser = argparse.ArgumentParser(exit_on_error=False)
    for call in ast.walk(ast.parse(src)):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument":
            args = [a.value for a in call.args if isinstance(a, ast.Constant)]
            kwargs = {k.arg: k.value.value for k in call.keywords if isinstance(k.value, ast.Constant) and k.arg in ("default", "action")}
            parser.add_argument(*args, **kwargs)
    for values_file in VALUES_FILES:
        objects = rendered(values_file)
        cmd = container(deployment(objects, "loader"))["command"]
        parsed = parser.parse_args(cmd[3:])  # the loader's own argparse definition accepts them
        group = parsed.group
        for so in by_kind(objects, "ScaledObject").values():
            if so["metadata"]["name"] == "llmner-loader":
                assert so["spec"]["triggers"][0]["metadata"]["consumerGroup"] == group
    bridge_group = re.search(r'^GROUP\s*=\s*"([^"]+)"', (ROOT / "workers" / "inbox.py").read_text(), re.MULTILINE).group(1)
    assert yaml.safe_load((CHART / "values.yaml").read_text())["bridge"]["consumerGroup"] == bridge_group


# -- autoscaling --------------------------------------------------------------------------------

def _prometheus_metric_refs(query: str) -> list[tuple[str, str | None]]:
    return [(m.group(1), m.group(3)) for m in re.finditer(r"([a-z_:]+)(\{queue=\"([a-z_]+)\"\})?", query)
            if m.group(1).startswith("llmner_")]


def _assert_same_redis_as_workers(objects: tuple[dict, ...], trigger: dict) -> None:
    """The KEDA trigger reads the Redis the workers use, with the same TLS and password."""
    env = configmap_env(objects)
    md = trigger["metadata"]
    host, port = md["address"].rsplit(":", 1)
    assert env["LLMNER_REDIS_URL"].split("://")[1] == f"{host}:{port}/{md['databaseIndex']}"
    tls = env["LLMNER_REDIS_URL"].startswith("rediss://")
    auth = by_kind(objects, "TriggerAuthentication").get(trigger.get("authenticationRef", {}).get("name", ""))
    params = {r["parameter"]: r for r in (auth or {}).get("spec", {}).get("secretTargetRef", [])}
    if tls and "LLMNER_REDIS_TLS_CA" in env:
        # Private CA: KEDA takes `tls` + `ca` from the TriggerAuthentication and refuses enableTLS with them.
        assert "enableTLS" not in md and "ca" in params
        (tls_env,) = [e for e in auth["spec"]["env"] if e["parameter"] == "tls"]
        for dep in by_kind(objects, "Deployment").values():
            assert {"name": tls_env["name"], "value": "enable"} in container(dep)["env"]
    else:
        assert md["enableTLS"] == str(tls).lower()
    has_password = any(e["name"] == "LLMNER_REDIS_PASSWORD" for d in by_kind(objects, "Deployment").values()
                       for e in container(d)["env"])
    assert has_password == ("password" in params)


def test_infer_scales_on_queued_and_running_work() -> None:
    objects = rendered("values-prod.yaml")
    env = configmap_env(objects)
    so = by_kind(objects, "ScaledObject")["llmner-infer"]
    triggers = {t["name"]: t for t in so["spec"]["triggers"]}
    assert triggers["chunks-waiting"]["type"] == "redis"
    assert triggers["chunks-waiting"]["metadata"]["listName"] == env["LLMNER_CHUNK_LIST"]
    assert triggers["batches-queued"]["metadata"]["listName"] == env["LLMNER_INFER_QUEUE"]
    for t in ("chunks-waiting", "batches-queued"):
        _assert_same_redis_as_workers(objects, triggers[t])
    # Running work: the unacked hash, read through the workers' own queue-depth gauge.
    query = triggers["queued-and-running"]["metadata"]["query"]
    refs = _prometheus_metric_refs(query)
    exported = exported_metrics()
    assert ("llmner_queue_depth", "unacked") in refs and ("llmner_queue_depth", "infer") in refs
    for metric, label in refs:
        assert metric in exported, f"{metric} is not exported by workers/metrics.py"
        if label:
            assert label in exported[metric], f"queue={label} is not a label value of {metric}"
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert behavior["stabilizationWindowSeconds"] >= 300
    assert behavior["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": behavior["policies"][0]["periodSeconds"]}]
    # A pod removed by a scale-down gets its soft shutdown.
    grace = deployment(objects, "infer")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(env["LLMNER_SOFT_SHUTDOWN_TIMEOUT"])


def test_loader_scales_on_results_consumer_group_lag() -> None:
    for values_file in ("values-dev.yaml", "values-prod.yaml"):
        objects = rendered(values_file)
        env = configmap_env(objects)
        triggers = {t["name"]: t for t in by_kind(objects, "ScaledObject")["llmner-loader"]["spec"]["triggers"]}
        for trig in triggers.values():
            assert trig["type"] == "redis-streams"
            assert trig["metadata"]["stream"] == env["LLMNER_RESULTS_STREAM"]
            _assert_same_redis_as_workers(objects, trig)
        assert int(triggers["results-lag"]["metadata"]["lagCount"]) > 0
        assert int(triggers["results-pending"]["metadata"]["pendingEntriesCount"]) > 0
        assert "lagCount" not in triggers["results-pending"]["metadata"]  # else KEDA would use lag mode


@pytest.mark.parametrize("component", COMPONENTS)
def test_hpa_and_keda_are_mutually_exclusive(component: str) -> None:
    values = with_values("values.yaml", **{f"{component}.hpa.enabled": True, f"{component}.keda.enabled": True})
    with pytest.raises(helm.HelmRenderError, match=f"{component}: hpa.enabled and keda.enabled are mutually exclusive"):
        render(values)
    # Either one alone renders exactly one autoscaler for the component.
    for engine, kind in (("hpa", "HorizontalPodAutoscaler"), ("keda", "ScaledObject")):
        objects = render(with_values("values.yaml", **{f"{component}.{engine}.enabled": True}))
        scalers = [o for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
        assert [(o["kind"], o["spec"]["scaleTargetRef"]["name"]) for o in scalers] == [(kind, f"llmner-{component}")]
        if kind == "HorizontalPodAutoscaler":
            kubernetes_validate.validate(strip(scalers[0]), chart_kube_version(), strict=True)


@pytest.mark.parametrize("component", ["ingest", "infer"])
def test_grace_period_must_exceed_the_soft_shutdown(component: str) -> None:
    others = {f"{c}.terminationGracePeriodSeconds": 300 for c in CELERY_COMPONENTS if c != component}
    values = with_values("values.yaml", **{"config.softShutdownTimeout": 200, **others})
    with pytest.raises(helm.HelmRenderError,
                       match=rf"{component}\.terminationGracePeriodSeconds \(\d+\) must be greater than config\.softShutdownTimeout \(200\)"):
        render(values)


def test_more_than_one_gpu_per_worker_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="one solo-pool process per GPU"):
        render(with_values("values.yaml", **{"infer.gpus": 2}))


def test_bundle_volume_is_mounted_and_named_in_the_environment() -> None:
    values = with_values("values.yaml", **{"bundle.volume": {"persistentVolumeClaim": {"claimName": "b1", "readOnly": True}},
                                           "bundle.version": "v2"})
    objects = render(values)
    assert configmap_env(tuple(objects))["LLMNER_BUNDLE"] == "/models/bundle"
    for component in ("ingest", "infer"):
        dep = deployment(tuple(objects), component)
        mounts = {m["mountPath"]: m for m in container(dep)["volumeMounts"]}
        assert mounts["/models/bundle"]["readOnly"] is True
        assert dep["spec"]["template"]["metadata"]["annotations"]["llmner.io/bundle-version"] == "v2"
    default_env = configmap_env(rendered("values.yaml"))
    assert "LLMNER_BUNDLE" not in default_env, "no bundle configured: the one baked into the image is used"


def test_values_schema_rejects_misspelt_and_mistyped_values() -> None:
    with pytest.raises(helm.HelmError, match="additional properties 'enable' not allowed"):
        render(with_values("values.yaml", **{"infer.keda.enable": True}))
    with pytest.raises(helm.HelmError, match="verify"):
        render(with_values("values.yaml", **{"redis.tls.verify": "yes"}))
    with pytest.raises(helm.HelmError, match="softShutdownTimeout"):
        render(with_values("values.yaml", **{"config.softShutdownTimeout": "60s"}))


def test_tls_without_private_ca_uses_enable_tls_on_the_triggers() -> None:
    values = with_values("values-dev.yaml", **{"redis.tls": {"enabled": True, "verify": "none", "caSecret": ""}})
    objects = tuple(render(values))
    env = configmap_env(objects)
    assert env["LLMNER_REDIS_URL"].startswith("rediss://") and env["LLMNER_REDIS_TLS_VERIFY"] == "none"
    assert "LLMNER_REDIS_TLS_CA" not in env
    for so in by_kind(objects, "ScaledObject").values():
        for trig in so["spec"]["triggers"]:
            if trig["type"].startswith("redis"):
                _assert_same_redis_as_workers(objects, trig)
                assert trig["metadata"]["unsafeSsl"] == "true"
    for ta in by_kind(objects, "TriggerAuthentication").values():
        assert "env" not in ta["spec"]


@pytest.mark.parametrize("values_file", VALUES_FILES)
def test_network_policy_admits_only_metrics_and_metrics_bind_the_pod_ip(values_file: str) -> None:
    """Issue 16: the metrics server listened on all interfaces and the chart had no NetworkPolicy."""
    objects = rendered(values_file)
    policies = list(by_kind(objects, "NetworkPolicy").values())
    assert len(policies) == 1
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert [p["port"] for rule in spec["ingress"] for p in rule["ports"]] == [9808]
    assert all("namespaceSelector" in src for rule in spec["ingress"] for src in rule["from"])
    for deployment in by_kind(objects, "Deployment").values():
        env = {e["name"]: e for c in deployment["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
        assert env["LLMNER_METRICS_ADDR"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
