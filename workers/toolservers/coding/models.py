"""The coding tools' typed results and the edit argument (server.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RepoInfo(_Out):
    name: str
    bare: bool
    head: str
    default_branch: str


class FilesResult(_Out):
    repo: str
    files: list[str]
    total: int
    truncated: bool


class ReadResult(_Out):
    repo: str
    path: str
    start_line: int
    end_line: int
    total_lines: int
    text: str  # each line as `N: text`
    truncated: bool


class Hit(_Out):
    path: str
    line: int
    text: str


class SearchResult(_Out):
    repo: str
    hits: list[Hit]
    truncated: bool


class CommitInfo(_Out):
    commit: str
    author: str
    date: str
    subject: str


class HistoryResult(_Out):
    repo: str
    path: str
    commits: list[CommitInfo]


class SymbolOut(_Out):
    path: str
    name: str
    kind: str
    line: int
    end_line: int


class SymbolsResult(_Out):
    repo: str
    language: str | None
    symbols: list[SymbolOut]
    truncated: bool = False
    note: str = ""


class Reference(_Out):
    path: str
    line: int
    column: int
    text: str
    definition: bool


class ReferencesResult(_Out):
    repo: str
    name: str
    references: list[Reference]
    truncated: bool


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(description="the file, relative to the repository root", min_length=1, max_length=1000)
    old: str | None = Field(
        default=None, description="text to replace: must occur exactly once in the file at HEAD (empty: a new file)"
    )
    new: str | None = Field(default=None, description="the replacement text (or a new file's content)")
    yaml_path: str | None = Field(
        default=None,
        description="instead of old/new: a YAML key path, e.g. resources.limits.memory or containers[0].image",
    )
    value: str | None = Field(default=None, description="the YAML value to set at yaml_path (a scalar, e.g. 2Gi)")
    document: int = Field(default=0, ge=0, description="which YAML document of a multi-document file (0: the first)")


class DiffResult(_Out):
    repo: str
    base: str  # the HEAD commit the diff applies to
    files: list[str]
    added: int
    removed: int
    diff: str
    checked: str


class ApplyResult(_Out):
    repo: str
    branch: str
    commit: str
    parent: str
    default_branch: str
    pushed_to: str | None
    message: str


class CommitEditResult(ApplyResult):
    """What `commit_edit` committed (or, for a key it had already acted on, committed then)."""

    diff: str  # the commit's diff against its parent
    files: list[str]
    added: int
    removed: int
    already_committed: bool  # an earlier call with the same idempotency key made this commit
