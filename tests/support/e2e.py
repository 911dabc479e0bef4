"""The end-to-end incident's runbook and Alertmanager webhook (a crash-looping deployment the runbook restarts)."""

from __future__ import annotations

import json

from tests.support.kmock_helpers import NS

RUNBOOK = """---
id: demo/restart-unhealthy-deployment
title: Restart an unhealthy deployment
match:
  - alertname=DemoDeploymentUnhealthy
actions:
  - tool: rollout_restart
    arguments:
      namespace: "{{ labels.namespace }}"
      deployment: "{{ labels.deployment }}"
---
# Restart an unhealthy deployment

## Meaning
A deployment's health gauge reports 0: its pods are up but do not serve.

## Mitigation
Restart the deployment with a rollout restart; it comes back healthy in a few seconds.
"""


def webhook(alertname: str, deployment: str, status: str = "firing") -> bytes:
    labels = {"alertname": alertname, "namespace": NS, "deployment": deployment, "severity": "warning"}
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="{alertname}", namespace="{NS}"}}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "agentic",
            "groupLabels": {"alertname": alertname, "namespace": NS},
            "commonLabels": labels,
            "commonAnnotations": {"summary": f"Deployment {NS}/{deployment} is unhealthy"},
            "externalURL": "http://alertmanager.local",
            "alerts": [
                {
                    "status": status,
                    "labels": {
                        "alertname": alertname,
                        "namespace": NS,
                        "deployment": deployment,
                        "severity": "warning",
                    },
                    "annotations": {"summary": f"Deployment {NS}/{deployment} is unhealthy"},
                    "startsAt": "2026-11-21T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus.local/graph",
                    "fingerprint": f"fp-{alertname}-{deployment}",
                }
            ],
        }
    ).encode()
