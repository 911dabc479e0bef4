"""The knowledge MCP server's typed tool results (structured content, and each tool's output
schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from agentic_core.trust import RunbookCounters


class RunbookHit(BaseModel):
    id: str
    title: str
    score: float
    automation_level: str = Field(description="manual | prompted | standard (from the ledger's trust record)")
    matched_labels: bool = Field(default=False, description="the runbook's label matchers fit the given labels")
    source: str = ""
    actions: list[dict[str, Any]] = Field(default_factory=list, description="the runbook's tool calls (templates)")
    excerpt: str = Field(default="", description="the start of the runbook's text")


class RunbookSearchResult(BaseModel):
    query: str
    hits: list[RunbookHit]


class DecisionHit(BaseModel):
    id: str
    incident_id: str
    summary: str
    score: float
    decision: str = Field(description="approved | modified | ignored | expired | automatic")
    decided_by: str | None = None
    outcome: str = Field(description="success | failure | unknown | pending")
    runbook_id: str | None = None
    actions: list[dict[str, Any]] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)


class DecisionSearchResult(BaseModel):
    query: str
    hits: list[DecisionHit]


class DocHit(BaseModel):
    id: str
    source: str = Field(description="the document's path")
    heading: str = Field(description="the section's heading path")
    score: float
    text: str


class DocSearchResult(BaseModel):
    query: str
    hits: list[DocHit]
    note: str = Field(
        default="",
        description="set while a documentation ingest is still running: the hits come from the sections indexed so far",
    )


class RunbookStatsResult(BaseModel):
    level_counts: dict[str, int] = Field(description="runbooks at each automation level")
    total: int
    runbook_id: str | None = None
    automation_level: str | None = None
    stats: RunbookCounters | None = None


class LevelChangeOut(BaseModel):
    from_level: str | None = Field(description="null: the level the runbook was added at")
    to_level: str
    reason: str
    changed_by: str
    changed_at: datetime


class DecisionOut(BaseModel):
    incident_id: str | None
    choice: str
    decided_by: str | None = None
    decided_at: datetime


class RunbookRecord(BaseModel):
    id: str
    title: str
    source: str
    automation_level: str
    match: list[str] = Field(description="label matchers")
    actions: list[dict[str, Any]]
    body: str
    created_at: datetime
    updated_at: datetime
    stats: RunbookCounters
    level_history: list[LevelChangeOut] = Field(description="oldest first")
    recent_decisions: list[DecisionOut] = Field(description="newest first")
