"""The Home Assistant MCP server's typed tool results (structured content, and each tool's
output schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class EntityBrief(BaseModel):
    entity_id: str
    state: str
    friendly_name: str | None = None
    last_changed: str | None = None


class EntityDetail(EntityBrief):
    last_updated: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    attributes_truncated: bool = False


class StatesResult(BaseModel):
    entities: list[EntityBrief]
    matched: int = Field(description="entities matching the filters (entities holds at most `limit` of them)")
    truncated: bool
    unavailable: list[str] = Field(
        default_factory=list, description="matching entities whose state is unavailable or unknown (at most 50)"
    )


class ErrorLogResult(BaseModel):
    lines: list[str]
    total_lines: int
    truncated: bool


class CheckConfigResult(BaseModel):
    valid: bool
    result: str
    errors: str | None = None
    warnings: str | None = None


class ServiceResult(BaseModel):
    service: str
    entity_id: str | None = None
    changed: list[EntityBrief] = Field(description="states Home Assistant reports changed by the call")
    state_after: EntityBrief | None = None
    message: str


class RestartResult(BaseModel):
    requested: bool
    config: CheckConfigResult
    message: str
