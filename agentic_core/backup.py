"""What the backup workflow takes and returns (docs/disaster-recovery.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field

BACKUP_WORKFLOW = "BackupWorkflow"
BACKUP_FAILED_ALERT = "AgenticBackupFailed"


class BackupInput(BaseModel):
    to: str | None = None  # the folder the backup goes in (default: the settings' backup dir)
    name: str | None = None  # default: backup-<UTC time>
    scheduled: bool = False  # started by the nightly schedule (its failures open an incident)


class BackupResult(BaseModel):
    name: str
    path: str
    size: int  # bytes on disk
    seconds: float
    contents: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    pruned: list[str] = Field(default_factory=list)


class BackupFailure(BaseModel):
    name: str | None = None
    error: str
    scheduled: bool = False


class RebuildInput(BaseModel):
    clear: bool = True  # empty the runbooks, decisions and documentation collections first


class RebuildResult(BaseModel):
    runbooks: int = 0
    decisions: int = 0
    cleared: dict[str, int] = Field(default_factory=dict)  # collection → points removed
