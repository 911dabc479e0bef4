"""The repositories the coding tools serve (`AGENTIC_REPOS`) and what is read from them through
`git` itself: the files (honouring .gitignore), a file's text, text search, a path's history.

`AGENTIC_REPOS` is a comma-separated `name=path` map, e.g. `gitops=/srv/gitops,app=/src/app`: a
name is letters, digits, `_`, `-`, `.`; a path is a Git working copy or a bare repository. A working
copy is read as it is on disk (tracked files and untracked ones that .gitignore does not exclude:
`git ls-files -co --exclude-standard`); a bare repository as its HEAD commit. A file that is
ignored, outside the repository or behind a symlink that leaves it is never read.

Everything runs `git` with a fixed argv (no shell), a timeout and bounded output; an error is a
`RepoError` whose text says what to fix.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

GIT_TIMEOUT_S = 30.0
MAX_FILE_BYTES = 2_000_000  # a file larger than this is not read (nor parsed)
_TRANSPORT_VARS = ("GIT_SSH", "GIT_SSL_", "GIT_HTTP_")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RepoError(Exception):
    """A repository operation that cannot be done; the text says why and what to do."""


def parse_repos(spec: str) -> dict[str, Path]:
    """`name=path,name=path` → {name: path}; a malformed entry is a ValueError naming it."""
    out: dict[str, Path] = {}
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(f"{item!r} is not name=path (AGENTIC_REPOS, e.g. gitops=/srv/gitops,app=/src/app)")
        if not NAME_RE.match(name):
            raise ValueError(f"{name!r}: a repository name is letters, digits, '_', '-', '.' (AGENTIC_REPOS)")
        if name in out:
            raise ValueError(f"{name!r} is named twice in AGENTIC_REPOS")
        out[name] = Path(path).expanduser()
    return out


def git(
    cwd: Path,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = GIT_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    """Run `git args` in `cwd` (no shell, no pager, no prompts, no system config). Of the
    environment's GIT_* variables only the transport's pass (GIT_SSH_COMMAND: the deploy key of a
    push); those that would point git at another repository, index or identity do not."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith(_TRANSPORT_VARS)},
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
        **(env or {}),
    }
    try:
        proc = subprocess.run(
            ["git", "-c", "core.quotepath=off", "-c", "safe.directory=*", *args],
            cwd=cwd,
            input=stdin,
            capture_output=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RepoError(f"git {args[0]} took longer than {timeout:.0f}s in {cwd}") from None
    if check and proc.returncode != 0:
        raise RepoError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[:500]}")
    return proc


@dataclass
class Repo:
    """One repository: a working copy (`bare=False`) or a bare repository read at HEAD."""

    name: str
    path: Path
    bare: bool
    _listing: tuple[str, list[str]] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, name: str, path: Path) -> Repo:
        if not path.exists():
            raise RepoError(f"repository {name!r}: {path} does not exist (AGENTIC_REPOS)")
        proc = git(path, "rev-parse", "--is-bare-repository", check=False)
        if proc.returncode != 0:
            raise RepoError(f"repository {name!r}: {path} is not a Git repository (AGENTIC_REPOS)")
        bare = proc.stdout.decode().strip() == "true"
        if not bare:
            top = Path(git(path, "rev-parse", "--show-toplevel").stdout.decode().strip())
            path = top
        return cls(name=name, path=path, bare=bare)

    # --- commits and refs ----------------------------------------------------------------------

    def head(self) -> str:
        """The HEAD commit's id; a repository without commits is an error."""
        proc = git(self.path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
        if proc.returncode != 0:
            raise RepoError(f"repository {self.name!r} has no commits yet")
        return proc.stdout.decode().strip()

    def default_branch(self) -> str:
        """The branch HEAD points at (the default branch), e.g. `main`."""
        proc = git(self.path, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
        return proc.stdout.decode().strip() or "HEAD"

    def branch_exists(self, branch: str) -> bool:
        return git(self.path, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}", check=False).returncode == 0

    # --- files ---------------------------------------------------------------------------------

    def files(self) -> list[str]:
        """Every file the tools may read, sorted: a working copy's tracked and untracked files that
        .gitignore does not exclude (cached per HEAD and index state), a bare repository's HEAD."""
        if self.bare:
            key = self.head()
            if self._listing and self._listing[0] == key:
                return self._listing[1]
            out = git(self.path, "ls-tree", "-r", "-z", "--name-only", "HEAD").stdout
            names = sorted(n for n in out.decode(errors="replace").split("\0") if n)
            self._listing = (key, names)
            return names
        out = git(self.path, "ls-files", "-z", "-c", "-o", "--exclude-standard").stdout
        names = sorted({n for n in out.decode(errors="replace").split("\0") if n})
        return [n for n in names if (self.path / n).is_file()]

    def check_path(self, path: str) -> str:
        """`path` normalised (relative, `/`-separated); refused when it leaves the repository."""
        p = PurePosixPath(path.strip().lstrip("/")) if path.strip() not in ("", ".", "/") else PurePosixPath(".")
        if any(part == ".." for part in p.parts) or (p.parts and p.parts[0] == ".git"):
            raise RepoError(f"{path!r} is outside the repository's files (no '..' or .git)")
        return str(p)

    def read_bytes(self, path: str, *, listed: bool = False) -> bytes:
        """The content of `path`: from disk in a working copy (when it is one of `files()`), from
        HEAD in a bare repository. `listed`: the path came from git itself (`files()`, `grep`),
        which honours .gitignore, so it is not asked again."""
        rel = self.check_path(path)
        if self.bare:
            proc = git(self.path, "cat-file", "-s", f"HEAD:{rel}", check=False)
            if proc.returncode != 0:
                raise RepoError(f"{rel}: no such file at HEAD in {self.name!r} (see repo_files)")
            if int(proc.stdout) > MAX_FILE_BYTES:
                raise RepoError(f"{rel} is larger than {MAX_FILE_BYTES} bytes: read it by line range elsewhere")
            return git(self.path, "show", f"HEAD:{rel}").stdout
        full = (self.path / rel).resolve()
        if not full.is_relative_to(self.path.resolve()):
            raise RepoError(f"{rel} leads outside the repository (a symlink): not read")
        if not full.is_file():
            raise RepoError(f"{rel}: no such file in {self.name!r} (see repo_files)")
        if not listed and not git(self.path, "ls-files", "-c", "-o", "--exclude-standard", "--", rel).stdout.strip():
            raise RepoError(f"{rel} is ignored by .gitignore: not read")
        if full.stat().st_size > MAX_FILE_BYTES:
            raise RepoError(f"{rel} is larger than {MAX_FILE_BYTES} bytes: not read")
        return full.read_bytes()

    def read_text(self, path: str, *, listed: bool = False) -> str:
        data = self.read_bytes(path, listed=listed)
        if b"\0" in data[:8000]:
            raise RepoError(f"{path} is a binary file: not shown")
        return data.decode("utf-8", errors="replace")

    def head_text(self, path: str, at: str = "HEAD") -> str | None:
        """`path`'s text at HEAD (or at the commit `at`), or None when it has no such file."""
        rel = self.check_path(path)
        proc = git(self.path, "show", f"{at}:{rel}", check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.decode("utf-8", errors="replace")

    # --- search and history ------------------------------------------------------------------

    def grep(
        self, pattern: str, *, regex: bool, ignore_case: bool, paths: list[str], limit: int
    ) -> tuple[list[tuple[str, int, str]], bool]:
        """`git grep` over the files (a working copy's untracked ones too; a bare one's HEAD):
        (path, line, text) at most `limit`, and whether there were more."""
        args = ["grep", "-n", "-I", "--no-color", "--full-name", "-z"]
        args += ["-E"] if regex else ["-F"]
        args += ["-i"] if ignore_case else []
        args += [] if self.bare else ["--untracked"]
        args += ["-e", pattern]
        args += ["HEAD"] if self.bare else []
        args += ["--", *[self.check_path(p) for p in paths]] if paths else []
        proc = git(self.path, *args, check=False)
        if proc.returncode not in (0, 1):
            raise RepoError(f"search failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
        hits: list[tuple[str, int, str]] = []
        more = False
        for raw in proc.stdout.decode("utf-8", errors="replace").splitlines():
            parts = raw.split("\0")
            if len(parts) < 3:
                continue
            path, line, text = parts[0], parts[1], "\0".join(parts[2:])
            if self.bare and path.startswith("HEAD:"):
                path = path[len("HEAD:") :]
            if len(hits) >= limit:
                more = True
                break
            hits.append((path, int(line), text[:300]))
        return hits, more

    def files_with(self, word: str, under: str = "") -> list[str]:
        """The files (as `grep` searches them) where `word` occurs as a whole word."""
        args = ["grep", "-l", "-I", "-w", "-F", "--full-name", "-z", *([] if self.bare else ["--untracked"])]
        args += ["-e", word, *(["HEAD"] if self.bare else [])]
        args += ["--", self.check_path(under)] if under.strip() not in ("", ".", "/") else []
        proc = git(self.path, *args, check=False)
        if proc.returncode not in (0, 1):
            raise RepoError(f"search failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
        names = [n for n in proc.stdout.decode("utf-8", errors="replace").split("\0") if n]
        return sorted(n.removeprefix("HEAD:") if self.bare else n for n in names)

    def log(self, path: str | None, limit: int) -> list[dict[str, str]]:
        """The commits that touched `path` (all commits when None), newest first."""
        fmt = "%H%x1f%an%x1f%ae%x1f%aI%x1f%s"
        args = ["log", f"-n{limit}", f"--format={fmt}", "HEAD"]
        if path:
            args += ["--", self.check_path(path)]
        out = git(self.path, *args).stdout.decode("utf-8", errors="replace")
        commits = []
        for line in out.splitlines():
            sha, name, email, when, subject = (line.split("\x1f") + [""] * 5)[:5]
            commits.append({"commit": sha, "author": f"{name} <{email}>", "date": when, "subject": subject})
        return commits
