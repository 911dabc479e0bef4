"""The arr-suite MCP server's typed tool results (structured content, and each tool's output schema)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class StatusResult(BaseModel):
    app: str
    app_name: str | None = None
    instance_name: str | None = None
    version: str | None = None
    branch: str | None = None
    start_time: str | None = None
    os_name: str | None = None
    is_docker: bool | None = None
    url_base: str | None = None


class HealthIssue(BaseModel):
    source: str
    type: str = Field(description="ok, notice, warning or error")
    message: str
    wiki_url: str | None = None


class HealthResult(BaseModel):
    app: str
    healthy: bool = Field(description="no warning or error")
    issues: list[HealthIssue]


class QueueItem(BaseModel):
    id: int
    title: str
    status: str = Field(description="downloading, paused, queued, completed, delay, warning, failed, ...")
    tracked_download_status: str | None = Field(default=None, description="ok, warning or error")
    tracked_download_state: str | None = Field(
        default=None, description="downloading, importPending, importing, imported, importBlocked, failed, ..."
    )
    problem: bool = Field(description="stalled, failed, or blocked from importing")
    messages: list[str] = Field(default_factory=list, description="the app's status messages for the item")
    error_message: str | None = None
    download_client: str | None = None
    indexer: str | None = None
    protocol: str | None = None
    size: float | None = None
    size_left: float | None = None
    time_left: str | None = None
    added: str | None = None


class QueueResult(BaseModel):
    app: str
    page: int
    page_size: int
    total_records: int
    items: list[QueueItem]
    problems: int = Field(description="items of this page with a problem")


class IndexerInfo(BaseModel):
    id: int
    name: str
    enable: bool
    protocol: str | None = None
    implementation: str | None = None
    priority: int | None = None
    failing: bool = Field(description="Prowlarr has disabled it after failures (disabled_till in the future)")
    disabled_till: str | None = None
    most_recent_failure: str | None = None
    initial_failure: str | None = None


class IndexersResult(BaseModel):
    indexers: list[IndexerInfo]
    failing: int


class CommandResult(BaseModel):
    app: str
    id: int | None = None
    name: str
    status: str = Field(description="queued, started, completed, failed, ...")
    message: str | None = None
    queued: str | None = None


class RemoveResult(BaseModel):
    app: str
    id: int
    removed: bool
    already_gone: bool = False
    blocklisted: bool = False
    message: str


class IndexerTestResult(BaseModel):
    id: int
    name: str
    ok: bool
    failures: list[str] = Field(default_factory=list, description="why the test failed, as Prowlarr says")
