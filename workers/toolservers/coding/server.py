"""The MCP coding server: Git repositories (AGENTIC_REPOS) as tools over streamable HTTP at /mcp:
read tools, structure through real parsers, and changes as reviewed diffs.

    python -m workers.toolservers.coding --host 127.0.0.1 --port 8096 \\
        --repos gitops=/srv/gitops,app=/src/app [--push-remote origin] \\
        [--author "agentic-platform <agentic@localhost>"] [--token-env AGENTIC_MCP_TOKEN]

Tools (read-only unless said):

  repo_list()                                         the repositories, their HEAD and default branch
  repo_files(repo, under?, pattern?, limit?)          files, honouring .gitignore
  repo_read(repo, path, start_line?, end_line?)       a file or a line range, numbered
  repo_search(repo, text, regex?, ignore_case?, paths?, limit?)   git grep
  repo_history(repo, path?, limit?)                   git log of a path
  repo_symbols(repo, path)                            what a file defines (ast / tree-sitter)
  repo_definitions(repo, name, under?, limit?)        where a symbol is defined
  repo_references(repo, name, under?, limit?)         where an identifier occurs
  propose_edit(repo, edits)                           a unified diff, checked with git apply --check
  apply_change(repo, diff, title, request, ...)       WRITE: commits the diff on a new branch
  commit_edit(repo, edits, title, ...)                WRITE: propose_edit's edits committed on a new
                                                      branch, once per idempotency key (the GitOps action)

`propose_edit` writes nothing: it returns the diff and the HEAD it applies to. `apply_change`
(annotated not read-only, so an agent's call of it becomes a question to a human) commits an
approved diff on a new branch from HEAD and pushes that branch when a push remote is configured;
it never moves the default branch nor touches the working copy, and refuses a stale diff (one
that no longer applies to HEAD) with the reason. `commit_edit`, the incidents' GitOps action, is
gitops.py. Structure: structure.py; diffs and commits: edits.py; the repositories: repos.py.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import hashlib
import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from activities.tools import IDEMPOTENCY_KEY_META
from workers.process import StartupError
from workers.toolservers.coding import edits as ed
from workers.toolservers.coding import gitops
from workers.toolservers.coding import structure as st
from workers.toolservers.coding.models import (
    ApplyResult,
    CommitEditResult,
    CommitInfo,
    DiffResult,
    EditIn,
    FilesResult,
    HistoryResult,
    Hit,
    ReadResult,
    Reference,
    ReferencesResult,
    RepoInfo,
    SearchResult,
    SymbolOut,
    SymbolsResult,
)
from workers.toolservers.coding.repos import Repo, RepoError, parse_repos
from workers.toolservers.common import (
    READ_ONLY,
    env_default,
    new_server,
    tool,
    tool_annotations,
)
from workers.toolservers.serving import Launch, Serving, ToolServer

__all__ = ["APPLY", "COMMIT", "build_server", "main"]

SERVER_NAME = "agentic-coding"
DEFAULT_AUTHOR = "agentic-platform <agentic@localhost>"
# Commits an approved diff on a new branch: changes the repository (not read-only: the agent
# runtime asks a human first), destroys nothing (a new ref), and a repeat is refused (the branch exists).
APPLY = tool_annotations(read_only=False, destructive=False, idempotent=False)
# Commits edits on a branch named after the action's idempotency key: a repeat with the same key
# returns the first call's commit (the gateway fills the key: its `_meta` names the argument).
COMMIT = tool_annotations(read_only=False, destructive=False, idempotent=True)
T = TypeVar("T")

_KEY_HELP = "filled by the tool gateway with the action's key: a repeat returns the first commit"
_BASE_HELP = "the HEAD the approved diff was made against (propose_edit's base): that diff, or refused"
RepoName = Annotated[str, Field(description="the repository's name (see repo_list)", min_length=1, max_length=64)]
PathArg = Annotated[str, Field(description="a file's path relative to the repository root", max_length=1000)]
Under = Annotated[str, Field(description="only files under this folder (empty: all)", max_length=1000)]


def _changed(diff: str) -> tuple[int, int]:
    lines = diff.splitlines()
    added = sum(1 for ln in lines if ln.startswith("+") and not ln.startswith("+++"))
    removed = sum(1 for ln in lines if ln.startswith("-") and not ln.startswith("---"))
    return added, removed


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "change"


def build_server(
    repos: dict[str, Repo],
    *,
    author: str = DEFAULT_AUTHOR,
    push_remote: str | None = None,
    token: str | None = None,
    issuer_url: str = "http://127.0.0.1",
) -> MCPServer:
    """The MCP server with its tools over `repos`."""
    m = re.fullmatch(r"\s*(.+?)\s*<([^<>]+)>\s*", author)
    if m is None:
        raise ValueError(f"author {author!r} is not 'Name <email>'")
    ident = (m.group(1), m.group(2))
    cache: dict[tuple[str, str, Any], list[st.Symbol]] = {}

    def get(name: str) -> Repo:
        repo = repos.get(name)
        if repo is None:
            raise ToolError(f"no repository {name!r} (repositories: {', '.join(sorted(repos)) or 'none'})")
        return repo

    async def run(fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except RepoError as exc:
            raise ToolError(str(exc)) from None

    def under_files(repo: Repo, under: str) -> list[str]:
        files = repo.files()
        if under.strip() not in ("", ".", "/"):
            prefix = repo.check_path(under).rstrip("/") + "/"
            files = [f for f in files if f.startswith(prefix) or f == prefix[:-1]]
        return files

    def file_symbols(repo: Repo, path: str) -> list[st.Symbol]:
        stamp: Any
        if repo.bare:
            stamp = repo.head()
        else:
            s = (repo.path / path).stat()
            stamp = (s.st_mtime_ns, s.st_size)
        key = (repo.name, path, stamp)
        if key not in cache:
            text = repo.read_text(path, listed=True)
            try:
                cache[key] = st.symbols(path, text)
            except ValueError:  # a file that does not parse defines nothing we can name
                cache[key] = []
        return cache[key]

    # --- read tools ---------------------------------------------------------------------------

    async def repo_list() -> list[RepoInfo]:
        """The repositories this server serves, with their HEAD commit and default branch."""

        def go() -> list[RepoInfo]:
            return [
                RepoInfo(name=r.name, bare=r.bare, head=r.head(), default_branch=r.default_branch())
                for r in repos.values()
            ]

        return await run(go)

    async def repo_files(
        repo: RepoName,
        under: Under = "",
        pattern: Annotated[str, Field(description="a glob on the path, e.g. *.yaml or apps/*/values.yaml")] = "",
        limit: Annotated[int, Field(ge=1, le=5000)] = 500,
    ) -> FilesResult:
        """List a repository's files (tracked, and untracked ones .gitignore does not exclude)."""
        r = get(repo)

        def go() -> FilesResult:
            files = under_files(r, under)
            if pattern:
                files = [
                    f for f in files if fnmatch.fnmatch(f, pattern) or fnmatch.fnmatch(f.rsplit("/", 1)[-1], pattern)
                ]
            return FilesResult(repo=repo, files=files[:limit], total=len(files), truncated=len(files) > limit)

        return await run(go)

    async def repo_read(
        repo: RepoName,
        path: PathArg,
        start_line: Annotated[int, Field(ge=1)] = 1,
        end_line: Annotated[int | None, Field(ge=1, description="last line (default: start_line + 399)")] = None,
    ) -> ReadResult:
        """Read a file, or a range of its lines, each line numbered."""
        r = get(repo)

        def go() -> ReadResult:
            lines = r.read_text(path).splitlines()
            last = min(end_line or start_line + 399, start_line + 1999, len(lines))
            if start_line > max(len(lines), 1):
                raise ToolError(f"{path} has {len(lines)} lines: start_line {start_line} is past its end")
            text = "\n".join(f"{n}: {lines[n - 1]}" for n in range(start_line, last + 1))
            return ReadResult(
                repo=repo,
                path=r.check_path(path),
                start_line=start_line,
                end_line=last,
                total_lines=len(lines),
                text=text,
                truncated=last < (end_line or len(lines)) and last < len(lines),
            )

        return await run(go)

    async def repo_search(
        repo: RepoName,
        text: Annotated[str, Field(min_length=1, max_length=500, description="the text (or regex) to find")],
        regex: bool = False,
        ignore_case: bool = False,
        paths: Annotated[list[str], Field(description="only under these paths (git pathspecs)", max_length=20)] = [],  # noqa: B006
        limit: Annotated[int, Field(ge=1, le=1000)] = 100,
    ) -> SearchResult:
        """Search the repository's text (git grep), returning path, line number and the line."""
        r = get(repo)

        def go() -> SearchResult:
            hits, more = r.grep(text, regex=regex, ignore_case=ignore_case, paths=paths, limit=limit)
            return SearchResult(repo=repo, hits=[Hit(path=p, line=n, text=t) for p, n, t in hits], truncated=more)

        return await run(go)

    async def repo_history(
        repo: RepoName, path: PathArg = "", limit: Annotated[int, Field(ge=1, le=200)] = 20
    ) -> HistoryResult:
        """The commits that changed a path (the whole repository when empty), newest first."""
        r = get(repo)

        def go() -> HistoryResult:
            commits = [CommitInfo(**c) for c in r.log(path or None, limit)]
            return HistoryResult(repo=repo, path=path, commits=commits)

        return await run(go)

    async def repo_symbols(repo: RepoName, path: PathArg) -> SymbolsResult:
        """What a file defines, from a real parser: Python classes/functions/methods (ast); Go,
        Terraform/HCL blocks, Bash functions, Dockerfile stages/ARG/ENV, YAML and JSON keys as
        dotted paths (tree-sitter)."""
        r = get(repo)

        def go() -> SymbolsResult:
            rel = r.check_path(path)
            text = r.read_text(rel)
            lang = st.language_of(rel, text[:200])
            if lang is None:
                return SymbolsResult(repo=repo, language=None, symbols=[], note=f"no parser for {rel}")
            try:
                syms = st.symbols(rel, text)
            except ValueError as exc:
                raise ToolError(f"{rel}: {exc}") from None
            out = [SymbolOut(path=rel, name=s.name, kind=s.kind, line=s.line, end_line=s.end_line) for s in syms]
            return SymbolsResult(repo=repo, language=lang, symbols=out[:2000], truncated=len(out) > 2000)

        return await run(go)

    async def repo_definitions(
        repo: RepoName,
        name: Annotated[str, Field(min_length=1, max_length=300, description="a symbol: name or qualified name")],
        under: Under = "",
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> SymbolsResult:
        """Where a symbol is defined across the repository: `Settings`, `Class.method`,
        `variable.cluster_name`, `resources.limits.memory` (a dotted name matches its end)."""
        r = get(repo)

        def go() -> SymbolsResult:
            quoted = re.search(r'"([^"]+)"(?:\[\d+\])*$', name)
            last = quoted.group(1) if quoted else name.rsplit(".", 1)[-1].split("[", 1)[0]
            candidates = [p for p in r.files_with(last, under) if st.language_of(p) is not None]
            out: list[SymbolOut] = []
            for p in candidates:
                for s in file_symbols(r, p):
                    if s.name == name or s.name.endswith("." + name):
                        out.append(SymbolOut(path=p, name=s.name, kind=s.kind, line=s.line, end_line=s.end_line))
            return SymbolsResult(repo=repo, language=None, symbols=out[:limit], truncated=len(out) > limit)

        return await run(go)

    async def repo_references(
        repo: RepoName,
        name: Annotated[str, Field(min_length=1, max_length=200, description="an identifier, e.g. build_server")],
        under: Under = "",
        limit: Annotated[int, Field(ge=1, le=2000)] = 200,
    ) -> ReferencesResult:
        """Where an identifier occurs (names, attributes, imports, keys: not in comments or
        unrelated strings), definitions marked."""
        r = get(repo)

        def go() -> ReferencesResult:
            out: list[Reference] = []
            for p in r.files_with(name, under):
                try:
                    found = st.references(p, r.read_text(p, listed=True), name)
                except (RepoError, ValueError):
                    continue
                out += [Reference(path=p, **o.__dict__) for o in found]
            return ReferencesResult(repo=repo, name=name, references=out[:limit], truncated=len(out) > limit)

        return await run(go)

    # --- diffs and the write --------------------------------------------------------------------

    async def propose_edit(
        repo: RepoName,
        edits: Annotated[list[EditIn], Field(min_length=1, max_length=50, description="the edits, in order")],
    ) -> DiffResult:
        """Turn edits into a unified diff against HEAD, checked with `git apply --check`; writes
        nothing. Each edit is either old/new text (old must occur once) or yaml_path/value (a YAML
        value set in place, comments and order kept: a one-value change is a one-line diff)."""
        r = get(repo)

        def go() -> DiffResult:
            diff = ed.apply_edits(r, [ed.Edit(**e.model_dump()) for e in edits])
            base = ed.check(r, diff)
            added, removed = _changed(diff)
            files = sorted({p for p, _n, _s in ed.hunks(diff)})
            return DiffResult(
                repo=repo,
                base=base,
                files=files,
                added=added,
                removed=removed,
                diff=diff,
                checked=f"git apply --check: applies to HEAD {base[:12]}",
            )

        return await run(go)

    async def apply_change(
        repo: RepoName,
        diff: Annotated[str, Field(min_length=1, max_length=500_000, description="a diff from propose_edit")],
        title: Annotated[str, Field(min_length=1, max_length=120, description="the commit's subject line")],
        request: Annotated[
            str, Field(min_length=1, max_length=200, description="the request or incident this change answers")
        ],
        base: Annotated[
            str | None, Field(description="the HEAD the diff was made against (propose_edit's base)")
        ] = None,
        branch: Annotated[
            str | None, Field(description="the new branch (default: agentic/<request>-<diff hash>)", max_length=100)
        ] = None,
    ) -> ApplyResult:
        """Commit an approved diff on a NEW branch from HEAD (never the default branch; the working
        copy is not touched) and push that branch when a push remote is configured. A diff that
        no longer applies to HEAD is refused with the reason."""
        r = get(repo)

        def go() -> ApplyResult:
            name = branch or f"agentic/{_slug(request)}-{hashlib.sha256(diff.encode()).hexdigest()[:8]}"
            message = (
                f"{title}\n\nRequest: {request}\nProposed by the agentic-platform coding agent; approved by a human.\n"
            )
            out = ed.commit_diff(
                r, diff, branch=name, message=message, author=ident, base=base, push_remote=push_remote
            )
            return ApplyResult(repo=repo, message=message, **out)

        return await run(go)

    async def commit_edit(
        repo: RepoName,
        edits: Annotated[list[EditIn], Field(min_length=1, max_length=50, description="the edits, in order")],
        title: Annotated[str, Field(min_length=1, max_length=120, description="the commit's subject line")],
        request: Annotated[
            str, Field(max_length=200, description="the request or incident (default: the incident of the key)")
        ] = "",
        branch: Annotated[
            str | None, Field(description="the new branch (default: agentic/<idempotency key>)", max_length=100)
        ] = None,
        idempotency_key: Annotated[str | None, Field(description=_KEY_HELP, max_length=300)] = None,
        base: Annotated[str | None, Field(description=_BASE_HELP, max_length=64)] = None,
    ) -> CommitEditResult:
        """Commit edits (as propose_edit takes them) on a NEW branch from HEAD, made against HEAD
        (or against `base`: then that very diff, refused when it no longer applies to HEAD) and
        checked with git apply; edits that no longer apply fail with the reason. Never the default
        branch; the working copy is not touched; pushed when a push remote is configured. A call
        with a key this tool already committed for returns that commit, not a second one."""
        r = get(repo)

        def go() -> CommitEditResult:
            done = gitops.commit_edits(
                r,
                [ed.Edit(**e.model_dump()) for e in edits],
                eid=gitops.edits_id([e.model_dump(mode="json") for e in edits]),
                title=title,
                request=request,
                branch=branch,
                key=idempotency_key,
                base=base,
                author=ident,
                push_remote=push_remote,
            )
            added, removed = _changed(done.diff)
            files = sorted({p for p, _n, _s in ed.hunks(done.diff)})
            return CommitEditResult(repo=repo, files=files, added=added, removed=removed, **done.__dict__)

        return await run(go)

    tools = [
        tool(repo_list, "Repositories", READ_ONLY),
        tool(repo_files, "List files", READ_ONLY),
        tool(repo_read, "Read a file", READ_ONLY),
        tool(repo_search, "Search text", READ_ONLY),
        tool(repo_history, "History of a path", READ_ONLY),
        tool(repo_symbols, "Symbols of a file", READ_ONLY),
        tool(repo_definitions, "Find definitions", READ_ONLY),
        tool(repo_references, "Find references", READ_ONLY),
        tool(propose_edit, "Propose an edit (a diff)", READ_ONLY),
        tool(apply_change, "Commit a diff on a new branch", APPLY),
        tool(commit_edit, "Commit edits on a branch, once per key", COMMIT, {IDEMPOTENCY_KEY_META: "idempotency_key"}),
    ]
    return new_server(
        SERVER_NAME,
        title="Git repositories",
        instructions="Read the repositories, then propose changes as diffs (propose_edit); apply_change commits "
        "an approved diff on a new branch.",
        tools=tools,
        token=token,
        issuer_url=issuer_url,
        health=lambda: {"repos": sorted(repos)},
    )


# --------------------------------------------------------------------------- the process


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--repos",
        default=env_default("AGENTIC_REPOS"),
        help="the repositories, name=path,name=path (default: $AGENTIC_REPOS), e.g. gitops=/srv/gitops",
    )
    p.add_argument(
        "--push-remote",
        default=env_default("AGENTIC_CODING_PUSH_REMOTE"),
        help="push apply_change's branch to this remote (default: $AGENTIC_CODING_PUSH_REMOTE; empty: no push)",
    )
    p.add_argument(
        "--author",
        default=env_default("AGENTIC_CODING_AUTHOR", DEFAULT_AUTHOR),
        help="the commits' author, 'Name <email>' (default: $AGENTIC_CODING_AUTHOR or %(default)s)",
    )


def open_repos(spec: str | None) -> dict[str, Repo]:
    """The repositories of `spec` (AGENTIC_REPOS), each checked to be a Git repository."""
    if not spec:
        raise StartupError("no repositories: set AGENTIC_REPOS (--repos), e.g. gitops=/srv/gitops")
    try:
        paths = parse_repos(spec)
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    try:
        return {name: Repo.open(name, path) for name, path in paths.items()}
    except RepoError as exc:
        raise StartupError(str(exc)) from None


def configure(args: argparse.Namespace) -> Launch:
    repos = open_repos(args.repos)

    def launch(token: str | None, issuer: str) -> Serving:
        try:
            server = build_server(
                repos, author=args.author, push_remote=args.push_remote or None, token=token, issuer_url=issuer
            )
        except ValueError as exc:
            raise StartupError(f"AGENTIC_CODING_AUTHOR: {exc}") from None
        detail = "repositories: " + ", ".join(f"{n} ({r.path})" for n, r in repos.items())
        detail += f"; push: {args.push_remote}" if args.push_remote else "; push: off"
        return Serving(server, detail)

    return launch


PROCESS = ToolServer(
    "mcp_coding",
    "Git repository",
    port=8096,
    port_setting="AGENTIC_MCP_CODING_PORT",
    serves="coding tools",
    configure=configure,
    options=_options,
)
main = PROCESS.main
