"""The backup's pure parts: the nightly schedule follows AGENTIC_BACKUP_CRON (and "off" drops it),
names, manifests that lie about their files, and retention."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from activities.backup.archive import BackupError, Manifest, check_name, list_backups, prune, verify, write_manifest
from workers.schedules import NIGHTLY_BACKUP_SCHEDULE, desired_schedules
from workers.settings import Settings


def test_nightly_backup_schedule_follows_the_setting() -> None:
    on = {d.schedule_id: d for d in desired_schedules(Settings(_env_file=None))}  # type: ignore[call-arg]
    nightly = on[NIGHTLY_BACKUP_SCHEDULE]
    assert nightly.workflow_type == "BackupWorkflow" and nightly.cron == "30 2 * * *"
    assert nightly.workflow_input == {"to": None, "name": None, "scheduled": True}
    off = desired_schedules(Settings(_env_file=None, backup_cron="off"))  # type: ignore[call-arg]
    assert NIGHTLY_BACKUP_SCHEDULE not in {d.schedule_id for d in off} and len(off) == len(on) - 1


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "x.partial", ".hidden"])
def test_bad_backup_names_are_refused(name: str) -> None:
    with pytest.raises(BackupError, match="is not a backup name"):
        check_name(name)


def _backup(folder: Path, name: str, when: datetime) -> Path:
    d = folder / name
    d.mkdir(parents=True)
    (d / "ledger.dump").write_bytes(b"dump of " + name.encode())
    write_manifest(d, Manifest(name=name, created_at=when))
    return d


def test_a_manifest_naming_a_file_outside_the_backup_is_refused(tmp_path: Path) -> None:
    d = _backup(tmp_path, "b1", datetime(2026, 1, 1, tzinfo=UTC))
    m = Manifest.model_validate_json((d / "manifest.json").read_text())
    m.files[0].path = "../outside"
    (d / "manifest.json").write_text(m.model_dump_json())
    with pytest.raises(BackupError, match="outside the backup"):
        verify(d)


def test_list_and_prune_keep_the_newest_complete_backups(tmp_path: Path) -> None:
    for day in (1, 2, 3):
        _backup(tmp_path, f"b{day}", datetime(2026, 1, day, tzinfo=UTC))
    (tmp_path / "b9.partial").mkdir()
    os.utime(tmp_path / "b9.partial", (1, 1))
    (tmp_path / "junk").mkdir()  # no manifest: listed as incomplete, never deleted
    listed = list_backups(tmp_path)
    assert [b.name for b in listed if b.complete] == ["b3", "b2", "b1"]
    assert {b.name for b in listed if not b.complete} == {"b9.partial", "junk"}
    assert sorted(prune(tmp_path, keep=2)) == ["b1", "b9.partial"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b2", "b3", "junk"]
