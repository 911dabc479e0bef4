"""The MCP coding server (workers/toolservers/coding) against real Git repositories this module
creates, with this project's own Helm chart and Terraform as data: files honouring .gitignore,
reads, search, history, structure through the real parsers, diffs checked with `git apply`, a
stale diff refused with the reason, an approved change committed on a new branch (and pushed to a
remote) while the default branch and the working copy stay as they were. In-process
(`Client(server)`), and the process's start-up errors as one line."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from activities.tools import IDEMPOTENCY_KEY_META
from tests.support.env import REPO, free_port
from workers.process import StartupError
from workers.settings import Settings
from workers.stack.env import effective_settings
from workers.stack.parts import build_parts
from workers.toolservers.coding.repos import Repo
from workers.toolservers.coding.server import build_server, open_repos

VALUES = "deploy/helm/agentic-platform/values.yaml"
ME = ("Test Author", "test@example.org")

PY = '''"""A module."""

LIMIT = 3


class Scaler:
    """Scales things."""

    factor = 2

    def scale(self, n: int) -> int:
        return n * self.factor * LIMIT


def helper() -> int:
    return Scaler().scale(LIMIT)
'''


def run_git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": ME[0],
        "GIT_AUTHOR_EMAIL": ME[1],
        "GIT_COMMITTER_NAME": ME[0],
        "GIT_COMMITTER_EMAIL": ME[1],
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def make_repo(root: Path) -> Path:
    """A working copy: the project's chart and Terraform, a Python module, a .gitignore, an
    ignored secret and an untracked note, two commits on `main`."""
    repo = root / "gitops"
    shutil.copytree(REPO / "deploy" / "helm", repo / "deploy" / "helm")
    shutil.copytree(REPO / "terraform", repo / "terraform")
    (repo / "app").mkdir()
    (repo / "app" / "scaler.py").write_text(PY)
    (repo / ".gitignore").write_text("*.env\nbuild/\n")
    run_git(root, "init", "-q", "-b", "main", str(repo))
    run_git(repo, "add", "-A")
    run_git(repo, "commit", "-q", "-m", "the chart and terraform")
    values = repo / VALUES
    values.write_text(values.read_text() + "# the end\n")
    run_git(repo, "commit", "-q", "-am", "a comment at the end of the values")
    (repo / "secrets.env").write_text("TOKEN=hunter2\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.yaml").write_text("a: 1\n")
    (repo / "NOTES.md").write_text("untracked, not ignored\n")
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield make_repo(tmp_path_factory.mktemp("coding"))


def server(path: Path, **kw: Any) -> Any:
    return build_server({"gitops": Repo.open("gitops", path)}, author=f"{ME[0]} <{ME[1]}>", **kw)


def changes(diff: str) -> list[str]:
    """A diff's file headers and changed lines (without git's index line and hunk context)."""
    return [ln for ln in diff.splitlines() if ln[:1] in "+-"]


def text(r: CallToolResult) -> str:
    return "\n".join(c.text for c in r.content if isinstance(c, TextContent))


async def call(srv: Any, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    async with Client(srv) as c:
        r = await c.call_tool(tool, args)
    assert not r.is_error, text(r)
    assert r.structured_content is not None
    return dict(r.structured_content)


async def call_error(srv: Any, tool: str, args: dict[str, Any]) -> str:
    async with Client(srv) as c:
        r = await c.call_tool(tool, args)
    assert r.is_error, text(r)
    return text(r).removeprefix(f"Error executing tool {tool}: ")


# --------------------------------------------------------------------------- read tools


async def test_tools_and_their_annotations(repo: Path) -> None:
    async with Client(server(repo)) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == {
        "repo_list",
        "repo_files",
        "repo_read",
        "repo_search",
        "repo_history",
        "repo_symbols",
        "repo_definitions",
        "repo_references",
        "propose_edit",
        "apply_change",
        "commit_edit",
    }
    for name, t in tools.items():
        assert t.annotations is not None
        assert t.annotations.read_only_hint is (name not in ("apply_change", "commit_edit")), name
        assert t.input_schema.get("additionalProperties") is False
    # commit_edit acts once per key: the gateway fills the argument its _meta names (the GitOps action)
    assert tools["commit_edit"].annotations.idempotent_hint is True
    assert (tools["commit_edit"].meta or {}).get(IDEMPOTENCY_KEY_META) == "idempotency_key"
    repos = await call(server(repo), "repo_list", {})
    assert repos["result"][0]["default_branch"] == "main" and repos["result"][0]["bare"] is False


async def test_files_honour_gitignore_and_reads_stay_inside(repo: Path) -> None:
    srv = server(repo)
    files = (await call(srv, "repo_files", {"repo": "gitops", "limit": 5000}))["files"]
    assert VALUES in files and "terraform/talos-cluster/main.tf" in files and "NOTES.md" in files
    assert "secrets.env" not in files and "build/out.yaml" not in files
    tf = await call(srv, "repo_files", {"repo": "gitops", "under": "terraform", "pattern": "*.tf"})
    assert tf["files"] == sorted(f for f in files if f.startswith("terraform/") and f.endswith(".tf"))
    assert "ignored by .gitignore" in await call_error(srv, "repo_read", {"repo": "gitops", "path": "secrets.env"})
    assert "outside the repository" in await call_error(srv, "repo_read", {"repo": "gitops", "path": "../x"})
    assert "no repository 'nope'" in await call_error(srv, "repo_files", {"repo": "nope"})
    part = await call(srv, "repo_read", {"repo": "gitops", "path": "app/scaler.py", "start_line": 6, "end_line": 7})
    assert part["text"] == '6: class Scaler:\n7:     """Scales things."""' and part["total_lines"] == 16


async def test_search_and_history(repo: Path) -> None:
    srv = server(repo)
    hits = (await call(srv, "repo_search", {"repo": "gitops", "text": "hunter2"}))["hits"]
    assert hits == []  # the ignored file is not searched
    hits = (await call(srv, "repo_search", {"repo": "gitops", "text": "untracked, not"}))["hits"]
    assert hits == [{"path": "NOTES.md", "line": 1, "text": "untracked, not ignored"}]
    hits = await call(srv, "repo_search", {"repo": "gitops", "text": "talos_machine_secrets", "paths": ["terraform"]})
    assert {h["path"] for h in hits["hits"]} >= {"terraform/talos-cluster/main.tf"}
    log = await call(srv, "repo_history", {"repo": "gitops", "path": VALUES})
    assert [c["subject"] for c in log["commits"]] == ["a comment at the end of the values", "the chart and terraform"]
    assert log["commits"][0]["author"] == f"{ME[0]} <{ME[1]}>"


async def test_structure_through_the_parsers(repo: Path) -> None:
    srv = server(repo)
    tf = await call(srv, "repo_symbols", {"repo": "gitops", "path": "terraform/talos-cluster/variables.tf"})
    names = {s["name"]: s for s in tf["symbols"]}
    lines = (repo / "terraform/talos-cluster/variables.tf").read_text().splitlines()
    assert tf["language"] == "hcl"
    assert lines[names["variable.cluster_name"]["line"] - 1].startswith('variable "cluster_name"')
    py = await call(srv, "repo_symbols", {"repo": "gitops", "path": "app/scaler.py"})
    assert [(s["name"], s["kind"], s["line"]) for s in py["symbols"]] == [
        ("LIMIT", "variable", 3),
        ("Scaler", "class", 6),
        ("Scaler.factor", "attribute", 9),
        ("Scaler.scale", "method", 11),
        ("helper", "function", 15),
    ]
    d = await call(srv, "repo_definitions", {"repo": "gitops", "name": "worker.resources.limits.memory"})
    values = (repo / VALUES).read_text().splitlines()
    [hit] = d["symbols"]
    assert hit["path"] == VALUES and "memory:" in values[hit["line"] - 1]
    d = await call(srv, "repo_definitions", {"repo": "gitops", "name": "scale"})
    assert [(s["path"], s["name"]) for s in d["symbols"]] == [("app/scaler.py", "Scaler.scale")]
    refs = await call(srv, "repo_references", {"repo": "gitops", "name": "LIMIT"})
    assert [(r["line"], r["definition"]) for r in refs["references"]] == [(3, True), (12, False), (16, False)]
    refs = await call(srv, "repo_references", {"repo": "gitops", "name": "cluster_name", "under": "terraform"})
    assert {r["path"] for r in refs["references"]} >= {
        "terraform/talos-cluster/main.tf",
        "terraform/talos-cluster/variables.tf",
    }


# --------------------------------------------------------------------------- diffs and commits


async def test_a_yaml_value_change_is_a_one_line_diff_that_git_applies(repo: Path, tmp_path: Path) -> None:
    srv = server(repo)
    before = (repo / VALUES).read_text()
    out = await call(
        srv,
        "propose_edit",
        {"repo": "gitops", "edits": [{"path": VALUES, "yaml_path": "worker.resources.limits.memory", "value": "4Gi"}]},
    )
    assert (out["added"], out["removed"], out["files"]) == (1, 1, [VALUES])
    changed = [ln for ln in out["diff"].splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == ['-    limits: {cpu: "2", memory: 3Gi}', '+    limits: {cpu: "2", memory: 4Gi}']
    assert out["base"] == run_git(repo, "rev-parse", "HEAD").strip()
    assert (repo / VALUES).read_text() == before  # nothing written
    # the diff applies with plain `git apply` to a clone of HEAD, and only that value changed
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(repo), str(clone))
    (clone / "change.diff").write_text(out["diff"])
    run_git(clone, "apply", "change.diff")
    after = (clone / VALUES).read_text()
    assert after == before.replace('limits: {cpu: "2", memory: 3Gi}', 'limits: {cpu: "2", memory: 4Gi}', 1)
    assert "# the end" in after  # comments kept


async def test_text_edits_and_edits_that_cannot_be_made(repo: Path) -> None:
    srv = server(repo)
    out = await call(
        srv,
        "propose_edit",
        {"repo": "gitops", "edits": [{"path": "app/scaler.py", "old": "LIMIT = 3", "new": "LIMIT = 5"}]},
    )
    assert "-LIMIT = 3\n+LIMIT = 5" in out["diff"] and out["checked"].startswith("git apply --check: applies")
    err = await call_error(
        srv, "propose_edit", {"repo": "gitops", "edits": [{"path": "app/scaler.py", "old": "LIMIT = 9", "new": "x"}]}
    )
    assert "edit 1 (app/scaler.py): the old text does not occur in the file at HEAD" in err
    err = await call_error(
        srv,
        "propose_edit",
        {"repo": "gitops", "edits": [{"path": VALUES, "yaml_path": "worker.nope.memory", "value": "1"}]},
    )
    assert f"edit 1 ({VALUES}): yaml_path 'worker.nope.memory': 'worker.nope' is not in the file" in err
    err = await call_error(
        srv,
        "propose_edit",
        {"repo": "gitops", "edits": [{"path": VALUES, "yaml_path": "worker.resources.limits", "value": "1"}]},
    )
    assert "holds a mapping" in err
    # a key with dots is quoted in the path, in the symbols and in an edit
    key = 'bot.webhook.annotations."cert-manager.io/cluster-issuer"'
    d = await call(srv, "repo_definitions", {"repo": "gitops", "name": key})
    assert [(s["path"], s["name"]) for s in d["symbols"]] == [(VALUES, key)]
    out = await call(
        srv, "propose_edit", {"repo": "gitops", "edits": [{"path": VALUES, "yaml_path": key, "value": "x"}]}
    )
    assert changes(out["diff"])[2:] == [
        "-      cert-manager.io/cluster-issuer: homelab-ca",
        "+      cert-manager.io/cluster-issuer: x",
    ]


async def test_an_approved_change_lands_on_a_new_branch_and_main_is_untouched(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(repo), str(remote))
    run_git(repo, "remote", "add", "origin", str(remote))
    srv = server(repo, push_remote="origin")
    main_before = run_git(repo, "rev-parse", "main").strip()
    status_before = run_git(repo, "status", "--porcelain")
    edit = {"path": VALUES, "yaml_path": "worker.resources.limits.memory", "value": "4Gi"}
    prop = await call(srv, "propose_edit", {"repo": "gitops", "edits": [edit]})
    args = {"repo": "gitops", "diff": prop["diff"], "title": "Raise the worker's memory", "request": "INC-42"}
    done = await call(srv, "apply_change", {**args, "base": prop["base"]})
    assert done["branch"].startswith("agentic/inc-42-") and done["parent"] == main_before
    assert done["pushed_to"] == "origin" and done["default_branch"] == "main"
    # the branch holds exactly the diff; main, the working copy and the index did not move
    assert run_git(repo, "rev-parse", "main").strip() == main_before
    assert run_git(repo, "status", "--porcelain") == status_before
    assert changes(run_git(repo, "diff", f"{main_before}..{done['branch']}")) == changes(prop["diff"])
    assert changes(prop["diff"]) == [
        f"--- a/{VALUES}",
        f"+++ b/{VALUES}",
        '-    limits: {cpu: "2", memory: 3Gi}',
        '+    limits: {cpu: "2", memory: 4Gi}',
    ]
    msg = run_git(repo, "log", "-1", "--format=%an <%ae>%n%B", done["branch"])
    assert msg.startswith(f"{ME[0]} <{ME[1]}>\nRaise the worker's memory\n") and "Request: INC-42" in msg
    assert run_git(remote, "rev-parse", done["branch"]).strip() == done["commit"]
    assert run_git(remote, "rev-parse", "main").strip() == main_before
    # never the default branch; never an existing branch
    assert "never the default branch" in await call_error(srv, "apply_change", {**args, "branch": "main"})
    assert "already exists" in await call_error(srv, "apply_change", {**args, "branch": done["branch"]})

    # a diff made before HEAD moved under it is refused with the reason
    values = repo / VALUES
    values.write_text(values.read_text().replace('limits: {cpu: "2", memory: 3Gi}', 'limits: {cpu: "2", memory: 5Gi}'))
    run_git(repo, "commit", "-q", "-am", "someone else raised it")
    err = await call_error(srv, "apply_change", {**args, "base": prop["base"], "branch": "agentic/stale"})
    assert f"HEAD moved from {prop['base'][:12]}" in err
    assert f"hunk 1 of {VALUES}" in err and "does not match the file at HEAD" in err
    assert "memory: 3Gi" in err  # the lines it expected
    assert "stale" not in run_git(repo, "branch", "--list", "agentic/stale")


async def test_a_bare_repository_is_read_at_head(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    run_git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    srv = server(bare)
    files = (await call(srv, "repo_files", {"repo": "gitops", "limit": 5000}))["files"]
    assert VALUES in files and "NOTES.md" not in files  # HEAD's files
    py = await call(srv, "repo_symbols", {"repo": "gitops", "path": "app/scaler.py"})
    assert "Scaler.scale" in {s["name"] for s in py["symbols"]}
    prop = await call(
        srv, "propose_edit", {"repo": "gitops", "edits": [{"path": "app/scaler.py", "old": "= 3", "new": "= 4"}]}
    )
    done = await call(srv, "apply_change", {"repo": "gitops", "diff": prop["diff"], "title": "t", "request": "r"})
    assert run_git(bare, "rev-parse", done["branch"]).strip() == done["commit"]


async def test_start_up_errors_are_one_line(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}

    async def start(*args: str) -> tuple[int, str]:
        p = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "workers.toolservers.coding",
            "--port",
            str(free_port()),
            *args,
            cwd=REPO,
            env=clean,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(p.communicate(), 60)
        return p.returncode or 0, err.decode().strip()

    # the process: one line, exit 2
    assert await start("--repos", f"g={tmp_path}") == (
        2,
        f"error: repository 'g': {tmp_path} is not a Git repository (AGENTIC_REPOS)",
    )
    # the other refusals, as the process would print them
    with pytest.raises(StartupError, match=r"^no repositories: set AGENTIC_REPOS \(--repos\)"):
        open_repos("")
    with pytest.raises(StartupError, match=r"^'gitops' is not name=path \(AGENTIC_REPOS, e.g."):
        open_repos("gitops")
    with pytest.raises(StartupError, match=r"^'a' is named twice in AGENTIC_REPOS"):
        open_repos(f"a={tmp_path},a={tmp_path}")


def test_the_stack_part_runs_only_when_repositories_are_set(tmp_path: Path) -> None:
    def part(**over: object) -> Any:
        s = Settings(_env_file=None, data_dir=tmp_path, **over)  # type: ignore[call-arg, arg-type]
        return next(p for p in build_parts(s, effective_settings(s), resolve_binaries=False) if p.name == "mcp-coding")

    off = part()
    assert (off.mode, off.url) == ("disabled", "no repositories: set AGENTIC_REPOS (name=path,...)")
    on = part(repos=f"gitops={tmp_path},app=/src/app", mcp_coding_port=18096, coding_push_remote="origin")
    assert on.mode == "embedded" and on.phase == "service" and on.role == "MCP coding tools (Git: gitops, app)"
    assert on.argv[1:] == [
        "-P",
        "-m",
        "workers.toolservers.coding",
        "--host",
        "127.0.0.1",
        "--port",
        "18096",
        "--repos",
        f"gitops={tmp_path},app=/src/app",
        "--token-env",
        "AGENTIC_MCP_TOKEN",
    ]
    assert on.env["AGENTIC_CODING_PUSH_REMOTE"] == "origin"  # the server's --push-remote default
    ext = part(mcp_coding_url="http://mcp-coding.ai-tools:8096/mcp")
    assert (ext.mode, ext.url) == ("external", "http://mcp-coding.ai-tools:8096/mcp")


async def test_a_push_goes_through_the_configured_ssh_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the chart's deploy key reaches git as GIT_SSH_COMMAND; a failed push says the commit is kept
    repo = make_repo(tmp_path)
    run_git(repo, "remote", "add", "origin", "ssh://git@git.example/gitops.git")
    marker = tmp_path / "ssh-called"
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(f'#!/bin/sh\necho "$@" > {marker}\necho "Permission denied (publickey)." >&2\nexit 255\n')
    ssh.chmod(0o755)
    monkeypatch.setenv("GIT_SSH_COMMAND", str(ssh))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # never followed
    srv = server(repo, push_remote="origin")
    prop = await call(
        srv, "propose_edit", {"repo": "gitops", "edits": [{"path": "app/scaler.py", "old": "= 3", "new": "= 4"}]}
    )
    err = await call_error(
        srv,
        "apply_change",
        {"repo": "gitops", "diff": prop["diff"], "title": "t", "request": "r", "branch": "agentic/p"},
    )
    assert "git@git.example" in marker.read_text()
    assert err.startswith("committed ") and "on branch 'agentic/p', but the push to 'origin' failed" in err
    assert "Permission denied (publickey)" in err
