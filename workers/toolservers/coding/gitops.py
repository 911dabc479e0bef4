"""The incidents' GitOps action (docs/tools.md#the-gitops-action-of-an-incident): `commit_edit`
commits edits (as `propose_edit` takes them) on a new branch named after the action's idempotency
key, once: the commit carries the key and a hash of the edits as trailers, so a repeat with the key
finds it and returns it instead of committing again. With `base` (the commit the approved diff
was made against) the diff is made there and must apply to HEAD as it is (`edits.check`), so what is
committed is exactly the diff a human saw, or nothing. The default branch never moves.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from workers.toolservers.coding.edits import Edit, EditError, apply_edits, commit_diff, push_branch
from workers.toolservers.coding.repos import Repo, git

KEY_TRAILER = "Agentic-Idempotency-Key"
EDITS_TRAILER = "Agentic-Edits"


def branch_for_key(key: str) -> str:
    """The branch of the change an action's idempotency key names: `agentic/<key as a ref name>`
    (`inc-1/action/0/0` → `agentic/inc-1-action-0-0`); a long key is cut and hashed."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", key).strip("-.") or "change"
    name = re.sub(r"\.{2,}", ".", name)
    if len(name) > 80:
        name = name[:70].rstrip("-.") + "-" + hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"agentic/{name}"


def resolve_commit(repo: Repo, rev: str) -> str:
    """The commit id `rev` names in the repository (an error that says so when none)."""
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", rev):
        raise EditError(f"base {rev!r} is not a commit id")
    proc = git(repo.path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if proc.returncode != 0:
        raise EditError(f"base {rev!r} is not a commit of repository {repo.name!r}")
    return proc.stdout.decode().strip()


def commit_diff_of(repo: Repo, commit: str) -> tuple[str, str]:
    """(parent, diff) of a one-parent commit."""
    parent = git(repo.path, "rev-parse", "--verify", f"{commit}^").stdout.decode().strip()
    diff = git(repo.path, "diff", "--no-color", "--no-ext-diff", parent, commit).stdout.decode(errors="replace")
    return parent, diff


def committed_for_key(repo: Repo, branch: str, key: str, edits_id: str) -> str | None:
    """The commit an earlier call with `key` made on `branch` (None: the branch does not exist).
    A branch that holds something else, or this key's commit of other edits, is an error."""
    if not repo.branch_exists(branch):
        return None
    tip = git(repo.path, "rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}").stdout.decode().strip()
    message = git(repo.path, "log", "-1", "--format=%B", tip).stdout.decode(errors="replace")
    trailers = dict(
        (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in message.splitlines() if ":" in ln)
    )
    if trailers.get(KEY_TRAILER) != key:
        raise EditError(f"branch {branch!r} already exists and is not this action's change: name another branch")
    if trailers.get(EDITS_TRAILER) != edits_id:
        raise EditError(
            f"branch {branch!r} holds the commit {tip[:12]} of action {key!r} with other edits: "
            "not committing a second, different change under the same key"
        )
    return tip


def edits_id(edits: list[dict[str, Any]]) -> str:
    """A short hash of the edits (the `Agentic-Edits` trailer)."""
    return hashlib.sha256(json.dumps(edits, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Committed:
    commit: str
    branch: str
    parent: str
    default_branch: str
    pushed_to: str | None
    message: str
    diff: str
    already_committed: bool


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "change"


def commit_edits(
    repo: Repo,
    edits: list[Edit],
    *,
    eid: str,
    title: str,
    request: str = "",
    branch: str | None = None,
    key: str | None = None,
    base: str | None = None,
    author: tuple[str, str],
    push_remote: str | None = None,
) -> Committed:
    """Commit `edits` on a new branch (`branch`, else `agentic/<key>`), once per `key`: see the
    module doc. Edits that cannot be made are an `EditError` that says so."""
    key = (key or "").strip() or None
    about = request.strip() or (key.split("/action/", 1)[0] if key else "")
    name = branch or (branch_for_key(key) if key else f"agentic/{_slug(about or title)}-{eid[:8]}")
    if key is not None:
        done = committed_for_key(repo, name, key, eid)
        if done is not None:
            message = git(repo.path, "log", "-1", "--format=%B", done).stdout.decode(errors="replace")
            if push_remote:
                push_branch(repo, name, push_remote, done)
            parent, diff = commit_diff_of(repo, done)
            return Committed(done, name, parent, repo.default_branch(), push_remote, message, diff, True)
    at = resolve_commit(repo, base) if base else "HEAD"
    try:
        diff = apply_edits(repo, edits, at)
    except EditError as exc:
        where = f"HEAD {repo.head()[:12]}" if at == "HEAD" else f"base {at[:12]}"
        raise EditError(f"the approved edits no longer apply to {where}: {exc}") from None
    message = f"{title}\n\n" + (f"Request: {about}\n" if about else "")
    message += "Proposed by the agentic-platform as a GitOps change; approved by a human.\n"
    message += f"\n{EDITS_TRAILER}: {eid}\n" + (f"{KEY_TRAILER}: {key}\n" if key else "")
    out = commit_diff(
        repo, diff, branch=name, message=message, author=author, base=at if base else None, push_remote=push_remote
    )
    parent, committed = commit_diff_of(repo, out["commit"])
    return Committed(out["commit"], name, parent, out["default_branch"], out["pushed_to"], message, committed, False)
