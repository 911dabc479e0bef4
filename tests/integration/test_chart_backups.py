"""The chart's backups (docs/disaster-recovery.md): in wave 10, a pg_dump CronJob and a Qdrant
snapshot CronJob in the stores' namespace, writing to a kept PVC, with the network allowed and
the pods as locked down as every other; off with `backup.enabled=false`."""

from __future__ import annotations

from typing import Any

from tests.integration.test_chart import render


def _by(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)


def test_backup_cronjobs_render_in_wave_10_and_are_locked_down() -> None:
    docs = render("default")
    pvc = _by(docs, "PersistentVolumeClaim", "backups")
    assert pvc is not None and pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for name, needle in (("ledger-backup", "pg_dump -Fc"), ("qdrant-snapshot", "/snapshots")):
        cj = _by(docs, "CronJob", name)
        assert cj is not None, name
        assert (
            cj["metadata"]["namespace"] == "ai-vector"
            and cj["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "10"
        )
        assert cj["spec"]["concurrencyPolicy"] == "Forbid"
        pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
        [c] = pod["containers"]
        assert needle in c["args"][0], name
        assert c["securityContext"]["readOnlyRootFilesystem"] is True and c["resources"]["limits"]["memory"]
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/backups", "/tmp"}
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "backups"
        labels = cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "backup"
    assert _by(docs, "NetworkPolicy", "allow-backup-egress") is not None
    assert _by(docs, "NetworkPolicy", "allow-backup-ingress") is not None
    # the ledger's password comes from the secret, never from the manifest
    env = {
        e["name"]: e
        for e in _by(docs, "CronJob", "ledger-backup")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][
            0
        ]["env"]
    }  # type: ignore[index]
    assert "secretKeyRef" in env["PGPASSWORD"]["valueFrom"]


def test_backups_can_be_turned_off() -> None:
    docs = render("default", ("backup.enabled=false",))
    assert not [
        d for d in docs if d["kind"] == "CronJob" or d["metadata"]["name"] in ("backups", "allow-backup-egress")
    ]
