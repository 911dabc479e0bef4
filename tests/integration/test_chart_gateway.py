"""The chart's gateway (wave 8, templates/gateway.yaml): a Deployment with the platform's pod rules,
a Service, a NetworkPolicy that lets only the ingress controller in, and, when enabled, an Ingress
with TLS (cert-manager's annotation when an issuer is named)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from tests.integration.test_chart import CHART, K8S_VERSION, helm, render

ON = ("gateway.ingress.enabled=true", "gateway.ingress.clusterIssuer=homelab-ca", "gateway.approvers={boss}")


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def test_gateway_deployment_service_and_network_policy() -> None:
    docs = render("default")
    dep = _named(docs, "Deployment", "gateway")
    assert dep["metadata"]["namespace"] == "ai-agents"
    assert dep["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "8"
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "workers.gateway"]
    env = {e["name"]: e for e in c["env"]}
    assert env["AGENTIC_GATEWAY_HOST"]["value"] == "0.0.0.0" and env["AGENTIC_GATEWAY_PORT"]["value"] == "8087"
    assert "secretKeyRef" in env["AGENTIC_POSTGRES_DSN"]["valueFrom"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz" and c["resources"]["limits"]
    svc = _named(docs, "Service", "gateway")
    assert svc["spec"]["ports"][0]["port"] == 8087
    pol = _named(docs, "NetworkPolicy", "allow-gateway-ingress")["spec"]
    assert pol["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "gateway"
    [rule] = pol["ingress"]
    assert [p["port"] for p in rule["ports"]] == [8087]
    assert [f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for f in rule["from"]] == [
        "ingress-nginx"
    ]
    assert not any(d["kind"] == "Ingress" and d["metadata"]["name"] == "gateway" for d in docs)  # opt-in


def test_gateway_ingress_has_tls_and_cert_manager_when_configured() -> None:
    docs = render("default", ON)
    ing = _named(docs, "Ingress", "gateway")
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "homelab-ca"
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # SSE
    assert ing["spec"]["tls"] == [{"hosts": ["gateway.example.internal"], "secretName": "agentic-gateway-tls"}]
    env = {
        e["name"]: e.get("value")
        for e in _named(docs, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["AGENTIC_GATEWAY_APPROVERS"] == "boss"
    for d in docs:
        if d["metadata"]["name"] in ("gateway", "allow-gateway-ingress"):
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
    plain = render("default", ("gateway.ingress.enabled=true",))
    assert "cert-manager.io/cluster-issuer" not in _named(plain, "Ingress", "gateway")["metadata"]["annotations"]
    bad = helm("template", "x", str(CHART), "--set", "gateway.ratePerMinute=0", check=False)
    assert bad.returncode != 0 and "ratePerMinute" in bad.stderr
