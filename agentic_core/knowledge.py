"""The knowledge base's contracts: inputs and outputs of its workflows and activities (import,
search, list, docs ingest), one type each, so fields can be added later."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agentic_core.models import Collection, DocChunk, Runbook, SearchHit


class UpsertRunbooksInput(BaseModel):
    runbooks: list[Runbook]


class UpsertReport(BaseModel):
    """What an idempotent import did, by id."""

    added: list[str] = Field(default_factory=list)
    updated: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)

    def merge(self, other: UpsertReport) -> UpsertReport:
        return UpsertReport(
            added=self.added + other.added,
            updated=self.updated + other.updated,
            unchanged=self.unchanged + other.unchanged,
        )

    @property
    def total(self) -> int:
        return len(self.added) + len(self.updated) + len(self.unchanged)


class SearchInput(BaseModel):
    collection: Collection = Collection.RUNBOOKS
    text: str = Field(min_length=1)
    limit: int = Field(default=5, ge=1, le=100)
    labels: dict[str, str] | None = None


class SearchOutput(BaseModel):
    hits: list[SearchHit] = Field(default_factory=list)


class ListRunbooksInput(BaseModel):
    source: Literal["ledger", "knowledge"] = "ledger"


class RunbookSummary(BaseModel):
    id: str
    title: str
    automation_level: str
    source: str = ""


class ListRunbooksOutput(BaseModel):
    runbooks: list[RunbookSummary] = Field(default_factory=list)


class IngestDocsInput(BaseModel):
    chunks: list[DocChunk]
