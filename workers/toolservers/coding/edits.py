"""Edits as diffs, never writes: `make_diff` turns edits into a unified diff against HEAD and
checks it with `git apply --check` (on a throw-away index, so neither the working copy nor the
repository's own index is touched); `commit_diff` commits an approved diff on a new branch from
HEAD the same way (an index of its own, `commit-tree`, a new ref) and optionally pushes that
branch: the default branch and the working copy never change.

An edit is either a text replacement (`old` must occur exactly once in the file at HEAD; empty
`old` with a file HEAD does not have creates it) or a YAML value (`yaml_path` like
`resources.limits.memory` or `containers[0].image`, `value` a YAML scalar). A YAML value that
exists as a scalar is replaced in place, keeping its quoting, the comments and the order: a
one-value change is a one-line diff. A path that does not exist yet is added through
ruamel.yaml's round trip (comments and order kept).
"""

from __future__ import annotations

import difflib
import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.toolservers.coding.repos import Repo, RepoError, git

_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_FAILED_RE = re.compile(r"patch failed: (.+):(\d+)")
_BRANCH_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")


class EditError(RepoError):
    """An edit that cannot be made (the text says which and why)."""


@dataclass
class Edit:
    path: str
    old: str | None = None
    new: str | None = None
    yaml_path: str | None = None
    value: str | None = None
    document: int = 0


# --------------------------------------------------------------------------- YAML


def _path_parts(path: str) -> list[str]:
    """`a."b.c"[0].d` → ['a', '"b.c"[0]', 'd']: dots inside quotes belong to the key."""
    parts, cur, i = [], "", 0
    while i < len(path):
        ch = path[i]
        if ch in "\"'":
            end = path.find(ch, i + 1)
            if end < 0:
                raise EditError(f"yaml_path {path!r}: a quote is not closed")
            cur += path[i : end + 1]
            i = end + 1
        elif ch == ".":
            parts.append(cur)
            cur, i = "", i + 1
        else:
            cur += ch
            i += 1
    parts.append(cur)
    return parts


def _yaml_steps(path: str) -> list[str | int]:
    """`resources.limits.memory`, `containers[0].image`, `annotations."cert-manager.io/issuer"`."""
    steps: list[str | int] = []
    for part in _path_parts(path):
        quoted = re.fullmatch(r"(\"[^\"]*\"|'[^']*')((?:\[\d+\])*)", part)
        if quoted is not None:
            steps.append(quoted.group(1)[1:-1])
            steps += [int(i) for i in re.findall(r"\[(\d+)\]", quoted.group(2))]
            continue
        m = re.fullmatch(r"([^\[\]]*)((?:\[\d+\])*)", part)
        if m is None or (not m.group(1) and not m.group(2)):
            raise EditError(f"yaml_path {path!r}: {part!r} is not key or key[index] (e.g. resources.limits.memory)")
        if m.group(1):
            steps.append(m.group(1))
        steps += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return steps


def _yaml() -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    return y


def _scalar_value(value: str) -> Any:
    """`value` as YAML reads it (`2Gi` a string, `3` an int, `true` a bool); it must be a scalar."""
    y = _yaml()
    try:
        parsed = y.load(value)
    except Exception as exc:
        raise EditError(f"value {value!r} is not valid YAML: {exc}") from None
    if isinstance(parsed, dict | list):
        raise EditError(f"value {value!r} is not a scalar: set one value at a time")
    return parsed


def _render(value: str, old_token: str) -> str:
    """`value` written as the old token was: in the same quotes when it was quoted."""
    if old_token[:1] in ("'", '"'):
        q = old_token[0]
        return q + (value.replace("'", "''") if q == "'" else value.replace("\\", "\\\\").replace('"', '\\"')) + q
    return value


def yaml_set(text: str, yaml_path: str, value: str, document: int = 0) -> str:
    """`text` with the value at `yaml_path` (in document `document`) set to `value`."""
    steps = _yaml_steps(yaml_path)
    _scalar_value(value)
    y = _yaml()
    try:
        docs = list(y.load_all(text))
    except Exception as exc:
        raise EditError(f"the file is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not 0 <= document < len(docs):
        raise EditError(f"document {document}: the file has {len(docs)} YAML document(s)")
    node: Any = docs[document]
    for i, step in enumerate(steps[:-1]):
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            where = ".".join(str(s) for s in steps[: i + 1])
            raise EditError(f"yaml_path {yaml_path!r}: {where!r} is not in the file") from None
    last = steps[-1]
    exists = (isinstance(last, str) and isinstance(node, dict) and last in node) or (
        isinstance(last, int) and isinstance(node, list) and last < len(node)
    )
    if exists and not isinstance(node[last], dict | list):
        line, col = node.lc.value(last) if isinstance(last, str) else node.lc.item(last)
        lines = text.splitlines(keepends=True)
        src = lines[line]
        flow = bool(getattr(node, "fa", None) and node.fa.flow_style())
        token = _token_at(src, col, flow)
        if token is not None and "\n" not in token:
            new = _render(value, token)
            lines[line] = src[:col] + new + src[col + len(token) :]
            return "".join(lines)
    if exists and isinstance(node[last], dict | list):
        raise EditError(
            f"yaml_path {yaml_path!r} holds a {'mapping' if isinstance(node[last], dict) else 'list'}: "
            "set one of its values"
        )
    if not isinstance(node, dict) or not isinstance(last, str):
        raise EditError(f"yaml_path {yaml_path!r}: cannot add {last!r} there (only a new key of a mapping)")
    node[last] = _scalar_value(value)
    out = io.StringIO()
    y.dump_all(docs, out)
    return out.getvalue()


def _token_at(line: str, col: int, flow: bool = False) -> str | None:
    """The scalar token starting at `col` of `line`: quoted, or plain up to a comment or the end
    (in a flow collection, `{a: 1, b: 2}`, also up to `,`, `}` or `]`)."""
    rest = line[col:].rstrip("\r\n")
    if not rest:
        return None
    if rest[0] in ("'", '"'):
        q = rest[0]
        i = 1
        while i < len(rest):
            if rest[i] == "\\" and q == '"':
                i += 2
                continue
            if rest[i] == q:
                if q == "'" and rest[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                return rest[: i + 1]
            i += 1
        return None
    if rest[0] in "|>&*!{[":
        return None
    if flow:
        rest = re.split(r"[,}\]]", rest, maxsplit=1)[0]
    m = re.match(r"(.*?)(\s+#.*)?$", rest)
    token = (m.group(1) if m else rest).rstrip()
    return token or None


# --------------------------------------------------------------------------- diffs


def unified(path: str, before: str | None, after: str) -> str:
    """A `git apply`-able unified diff of one file (a new file when `before` is None)."""
    a = (before or "").splitlines(keepends=True)
    b = after.splitlines(keepends=True)
    body = list(difflib.unified_diff(a, b, f"a/{path}" if before is not None else "/dev/null", f"b/{path}", n=3))
    if not body:
        return ""
    lines: list[str] = []
    for ln in body:
        if ln.endswith("\n"):
            lines.append(ln)
        else:
            lines.append(ln + "\n\\ No newline at end of file\n")
    head = f"diff --git a/{path} b/{path}\n" + ("new file mode 100644\n" if before is None else "")
    return head + "".join(lines)


def apply_edits(repo: Repo, edits: list[Edit], at: str = "HEAD") -> str:
    """The unified diff that makes `edits` to HEAD, or to the commit `at` (edits of one file
    apply in order)."""
    if not edits:
        raise EditError("no edits given")
    files: dict[str, tuple[str | None, str]] = {}
    for n, e in enumerate(edits, 1):
        path = repo.check_path(e.path)
        if path == ".":
            raise EditError(f"edit {n}: no file named")
        before, current = files.get(path, (None, ""))
        if path not in files:
            before = repo.head_text(path, at)
            current = before or ""
        if e.yaml_path is not None:
            if e.old is not None or e.new is not None:
                raise EditError(f"edit {n} ({path}): give either old/new text or yaml_path/value, not both")
            if e.value is None:
                raise EditError(f"edit {n} ({path}): yaml_path needs a value")
            if before is None and path not in files:
                raise EditError(f"edit {n}: {path} is not in HEAD")
            try:
                current = yaml_set(current, e.yaml_path, e.value, e.document)
            except EditError as exc:
                raise EditError(f"edit {n} ({path}): {exc}") from None
        else:
            if e.new is None:
                raise EditError(f"edit {n} ({path}): give new text (and old text to replace), or yaml_path/value")
            old = e.old or ""
            if not old:
                if before is not None or path in files:
                    raise EditError(f"edit {n}: {path} exists: give the old text to replace")
                current = e.new
            else:
                if before is None and path not in files:
                    raise EditError(f"edit {n}: {path} is not in HEAD (see repo_files; empty old text creates a file)")
                count = current.count(old)
                if count != 1:
                    what = "does not occur" if count == 0 else f"occurs {count} times"
                    raise EditError(
                        f"edit {n} ({path}): the old text {what} in the file at HEAD; "
                        + ("read the file again and copy it exactly" if count == 0 else "give more context")
                    )
                current = current.replace(old, e.new, 1)
        files[path] = (before, current)
    diff = "".join(unified(p, b, a) for p, (b, a) in files.items())
    if not diff:
        raise EditError("the edits change nothing (the new text equals the old)")
    return diff


def hunks(diff: str) -> list[tuple[str, int, int]]:
    """(file, hunk number in that file, old start line) of each hunk."""
    out: list[tuple[str, int, int]] = []
    path, n = "", 0
    for line in diff.splitlines():
        if line.startswith("+++ "):
            path, n = line[4:].removeprefix("b/"), 0
        elif (m := _HUNK_RE.match(line)) is not None:
            n += 1
            out.append((path, n, int(m.group(1))))
    return out


def check(repo: Repo, diff: str, base: str | None = None) -> str:
    """`git apply --check` of `diff` against HEAD (the commit id); a diff that does not apply is
    an EditError naming the hunk and why, and when HEAD moved since `base`, saying so."""
    head = repo.head()
    with tempfile.TemporaryDirectory(prefix="agentic-coding-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo.path, "read-tree", head, env=env)
        proc = git(repo.path, "apply", "--check", "--cached", "-v", "-", stdin=diff.encode(), env=env, check=False)
    if proc.returncode == 0:
        return head
    raise EditError(_why(diff, proc.stderr.decode(errors="replace"), head, base))


def _why(diff: str, err: str, head: str, base: str | None) -> str:
    moved = f"HEAD moved from {base[:12]} to {head[:12]} since the diff was made: " if base and base != head else ""
    m = _FAILED_RE.search(err)
    if m:
        path, line = m.group(1), int(m.group(2))
        which = next(
            (f"hunk {n} of {p} (@@ -{start} …)" for p, n, start in hunks(diff) if p == path and start == line),
            f"a hunk of {path} at line {line}",
        )
        searched = (
            err.split("while searching for:", 1)[-1].split("error: patch failed", 1)[0].strip("\n")
            if ("while searching for:" in err)
            else ""
        )
        found = (
            f"; it expects these lines, which HEAD {head[:12]} does not have there:\n{searched[:800]}"
            if searched
            else ""
        )
        return f"{moved}the diff does not apply: {which} does not match the file at HEAD{found}"
    lines = [ln.removeprefix("error: ") for ln in err.splitlines() if ln.startswith("error:")]
    return f"{moved}the diff does not apply to HEAD {head[:12]}: {'; '.join(lines) or err.strip()[:500]}"


def commit_diff(
    repo: Repo,
    diff: str,
    *,
    branch: str,
    message: str,
    author: tuple[str, str],
    base: str | None = None,
    push_remote: str | None = None,
) -> dict[str, Any]:
    """Commit `diff` on a new `branch` from HEAD (checked first: a stale diff is refused with
    the reason); push it to `push_remote` when given. The default branch never moves."""
    if not _BRANCH_RE.match(branch) or ".." in branch or branch.endswith((".lock", "/", ".")):
        raise EditError(f"{branch!r} is not a valid branch name")
    default = repo.default_branch()
    if branch in (default, "main", "master", "HEAD"):
        raise EditError(f"refusing to commit to {branch!r}: changes go on a new branch, never the default branch")
    if repo.branch_exists(branch):
        raise EditError(f"branch {branch!r} already exists: name a new branch")
    head = check(repo, diff, base)
    name, email = author
    ident = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    with tempfile.TemporaryDirectory(prefix="agentic-coding-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **ident}
        git(repo.path, "read-tree", head, env=env)
        git(repo.path, "apply", "--cached", "-", stdin=diff.encode(), env=env)
        tree = git(repo.path, "write-tree", env=env).stdout.decode().strip()
        commit = git(repo.path, "commit-tree", tree, "-p", head, "-F", "-", stdin=message.encode(), env=env)
    sha = commit.stdout.decode().strip()
    # create only: fails when the branch appeared meanwhile (the all-zero old value)
    git(repo.path, "update-ref", f"refs/heads/{branch}", sha, "0" * 40)
    pushed = None
    if push_remote:
        push_branch(repo, branch, push_remote, sha)
        pushed = push_remote
    return {"commit": sha, "branch": branch, "parent": head, "default_branch": default, "pushed_to": pushed}


def push_branch(repo: Repo, branch: str, push_remote: str, sha: str) -> None:
    """Push `branch` to `push_remote` (pushing it again is harmless: the same commit)."""
    proc = git(
        repo.path,
        "push",
        "--porcelain",
        push_remote,
        f"refs/heads/{branch}:refs/heads/{branch}",
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise EditError(
            f"committed {sha[:12]} on branch {branch!r}, but the push to {push_remote!r} failed: "
            f"{proc.stderr.decode(errors='replace').strip()[:300]}"
        )
