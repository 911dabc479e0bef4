"""Runbook and documentation markdown: parsing runbook files, front matter and headings (the
documents' chunking is `chunks.py`, on the same heading scanner).

Runbook files
-------------
A runbook is one markdown file, optionally opened by YAML front matter between two `---`
lines (TOML front matter between `+++` lines, as Hugo writes it, is read too)::

    ---
    id: kubernetes/restart-crashlooping          # optional
    title: Restart a crash-looping deployment     # optional
    match:                                        # alert label matchers, optional
      - alertname=KubePodCrashLooping
      - namespace=~prod-.*
    actions:                                      # MCP tool calls, optional
      - tool: kubernetes.restart_deployment
        arguments: {namespace: "{{ labels.namespace }}"}
    automation_level: manual                      # manual | prompted | standard
    allow_namespaces: [kube-system]               # protected namespaces its plan may change, optional
    evidence:                                     # read-only tool calls gathered first, optional
      - tool: get_pod_logs
        arguments: {namespace: "{{ labels.namespace }}", pod: "{{ labels.pod }}", previous: true}
    ---
    # Restart a crash-looping deployment
    ...

Unknown front-matter keys (Hugo's `weight`, `bookCollapseSection`, `aliases`, ...) are
ignored, so a folder of Hugo runbook pages imports as it is.

Rules, in order:

- **id**: the front matter's `id`, else the file's path relative to the import root without
  the `.md` suffix, with `/` separators (`kubernetes/KubePodCrashLooping`; a file at the
  root gets its stem). Path-derived ids are unique by construction (two `README.md` in
  different folders get `a/README` and `b/README`) and stable (they do not change when
  another file is added). Characters a runbook id may not hold (anything but letters,
  digits, `.`, `_`, `-`, `/`) become `-`.
- **title**: the front matter's `title`, else the first heading, else the file stem.
- **match**: the front matter's `match` (a mapping, a list of `name=value` / `name=~re`
  strings, or one such string). Without a `match` key, a file whose stem looks like an
  alert name (one identifier with upper and lower case letters: `KubePodCrashLooping`,
  `etcdNoLeader`, `Watchdog`) gets `alertname=<stem>`. An explicit `match: []` turns this off.
- **body**: the markdown after the front matter. A file with neither body nor actions is
  malformed.
- **allow_namespaces**: the front matter's `allow_namespaces` (a list of namespace names, or
  one name): protected namespaces (AGENTIC_PROTECTED_NAMESPACES) the runbook's own plan may
  change. Exact names, no patterns. Default: none.
- **evidence**: the front matter's `evidence`, a list of `{tool, arguments}` like `actions`: the
  read-only tool calls an incident gathers before its diagnosis (the investigate stage). A tool
  the platform knows to change something (`agentic_core.tools.WRITE_TOOLS`) is refused here.
  Default: none.

`iter_markdown_files` skips files whose name starts with `_` (Hugo section pages such as
`_index.md`, which hold only navigation front matter) and anything under a hidden folder.
Documentation chunking can ask for them with `include_index=True`.

Documentation chunking (chunks.py)
----------------------------------
`chunk_markdown` splits a document into sections at its headings (ATX `#` and setext
headings, never inside fenced code), one `DocChunk` per non-empty section with the heading
path (`Configuration > Temporal`) and a stable id `<relative path>#<heading slug>:<part>`;
sections longer than `max_chars` are split at paragraph, then line boundaries.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentic_core.models import AutomationLevel, Runbook
from agentic_core.tools import WRITE_TOOLS

__all__ = [
    "RunbookFormatError",
    "iter_markdown_files",
    "load_runbooks",
    "looks_like_alert_name",
    "parse_runbook_file",
    "parse_runbook_text",
    "runbook_id_for",
    "split_front_matter",
]


HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._/-]+")
_ALERT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NOT_ALERT_NAMES = frozenset(
    {"readme", "changelog", "contributing", "license", "index", "overview", "introduction", "summary", "todo"}
)
_KNOWN_KEYS = ("id", "title", "match", "actions", "automation_level", "allow_namespaces", "evidence")


class RunbookFormatError(ValueError):
    """A runbook file that cannot be imported; `str()` is one line naming the file and the problem."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the parser said
        super().__init__(f"{self.path}: {self.reason}")


# --------------------------------------------------------------------------------------
# front matter


def split_front_matter(text: str) -> tuple[str | None, str, str]:
    """Split `text` into (front matter source or None, its format "yaml"/"toml"/"", body).

    Raises ValueError when a front-matter block is opened but never closed.
    """
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines:
        return None, "", ""
    first = lines[0].strip()
    closers: tuple[str, ...]
    if first == "---":
        closers, fmt = ("---", "..."), "yaml"
    elif first == "+++":
        closers, fmt = ("+++",), "toml"
    else:
        return None, "", text
    for i in range(1, len(lines)):
        if lines[i].strip() in closers:
            return "".join(lines[1:i]), fmt, "".join(lines[i + 1 :])
    raise ValueError(f"front matter opened with {first!r} on line 1 is never closed")


def load_front_matter(source: str, fmt: str) -> dict[str, Any]:
    if fmt == "toml":
        try:
            data: Any = tomllib.loads(source)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"bad TOML front matter: {exc}") from exc
    else:
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            where = ""
            mark = getattr(exc, "problem_mark", None)
            if mark is not None:
                where = f" at front-matter line {mark.line + 1}, column {mark.column + 1}"
            problem = getattr(exc, "problem", None) or str(exc)
            raise ValueError(f"bad YAML front matter{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"front matter must be a mapping of keys to values, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------
# runbooks


def looks_like_alert_name(name: str) -> bool:
    """True for identifiers like `KubePodCrashLooping`, `etcdNoLeader`, `Watchdog`."""
    return (
        bool(_ALERT_NAME_RE.match(name))
        and any(c.isupper() for c in name)
        and any(c.islower() for c in name)
        and name.lower() not in _NOT_ALERT_NAMES
    )


def runbook_id_for(path: Path, root: Path) -> str:
    """The id of a runbook file without an explicit `id`: its relative path without suffix."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    parts = [_ID_BAD_CHARS.sub("-", p).strip("-") or "-" for p in rel.with_suffix("").parts]
    rid = "/".join(parts)
    rid = rid.lstrip("._-/") or "runbook"
    return rid[:200]


def _first_heading(markdown: str) -> str | None:
    for _level, title, _ in iter_headings(markdown.splitlines()):
        if title:
            return title
    return None


def _format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "front matter"
        msg = err.get("msg", "invalid")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_runbook_text(text: str, rel_path: str, *, default_id: str, stem: str) -> Runbook:
    """Build a Runbook from a file's text (raises ValueError with a one-line reason)."""
    if not text.strip():
        raise ValueError("file is empty")
    fm_source, fmt, body = split_front_matter(text)
    meta = load_front_matter(fm_source, fmt) if fm_source is not None else {}
    body = body.strip()

    for key in ("id", "title"):
        if key in meta and meta[key] is not None and not isinstance(meta[key], str | int | float):
            raise ValueError(f"front-matter {key!r} must be a string, got {type(meta[key]).__name__}")
    rid = str(meta["id"]).strip() if meta.get("id") is not None else default_id
    title = str(meta["title"]).strip() if meta.get("title") is not None else ""
    if not title:
        title = _first_heading(body) or stem

    if "match" in meta:
        match = meta["match"]
        if match is not None and not isinstance(match, dict | list | str):
            raise ValueError(
                f"front-matter 'match' must be a mapping or a list of matchers, got {type(match).__name__}"
            )
        if isinstance(match, list) and not all(isinstance(m, str) for m in match):
            raise ValueError("front-matter 'match' list must hold strings like alertname=KubePodCrashLooping")
    else:
        match = [f"alertname={stem}"] if looks_like_alert_name(stem) else []

    actions = _tool_calls(meta, "actions")
    evidence = _tool_calls(meta, "evidence")
    for i, call in enumerate(evidence):
        if call.get("tool") in WRITE_TOOLS:
            raise ValueError(
                f"front-matter evidence[{i}]: {call.get('tool')} changes something; evidence calls only look "
                "(read-only tools): put it under actions"
            )

    raw_level = meta.get("automation_level")
    if raw_level is None:
        level = AutomationLevel.MANUAL
    elif not isinstance(raw_level, str) or raw_level.strip().lower() not in {lv.value for lv in AutomationLevel}:
        allowed = ", ".join(lv.value for lv in AutomationLevel)
        raise ValueError(f"front-matter 'automation_level' must be one of {allowed}, got {raw_level!r}")
    else:
        level = AutomationLevel(raw_level.strip().lower())

    allow_namespaces = meta.get("allow_namespaces")
    if allow_namespaces is not None and not (
        isinstance(allow_namespaces, str)
        or (isinstance(allow_namespaces, list) and all(isinstance(n, str) for n in allow_namespaces))
    ):
        raise ValueError(
            "front-matter 'allow_namespaces' must be a list of namespace names (e.g. [kube-system]), "
            f"got {allow_namespaces!r}"
        )

    if not body and not actions:
        raise ValueError("no runbook text after the front matter and no actions")

    try:
        runbook = Runbook.model_validate(
            {
                "id": rid,
                "title": title,
                "body": body,
                "source": rel_path,
                "match": match,
                "actions": [{"tool": a.get("tool"), "arguments": a.get("arguments") or {}} for a in actions],
                "evidence": [{"tool": e.get("tool"), "arguments": e.get("arguments") or {}} for e in evidence],
                "automation_level": level,
                "allow_namespaces": allow_namespaces or [],
            }
        )
    except ValidationError as exc:
        raise ValueError(_format_validation_error(exc)) from exc
    runbook.content_hash = runbook.compute_hash()
    return runbook


def _tool_calls(meta: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The front matter's list of `{tool, arguments}` under `key` (actions, evidence), checked."""
    calls = meta.get(key) or []
    if not isinstance(calls, list):
        raise ValueError(f"front-matter '{key}' must be a list of {{tool, arguments}}, got {type(calls).__name__}")
    for i, call in enumerate(calls):
        if not isinstance(call, dict):
            raise ValueError(f"front-matter {key}[{i}] must be a mapping with 'tool' and 'arguments'")
        if "arguments" in call and call["arguments"] is not None and not isinstance(call["arguments"], dict):
            raise ValueError(f"front-matter {key}[{i}].arguments must be a mapping")
    return calls


def parse_runbook_file(path: Path, root: Path) -> Runbook:
    """Parse one runbook file. Raises `RunbookFormatError(path, reason)` if it is malformed."""
    path = Path(path)
    root = Path(root)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RunbookFormatError(path, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunbookFormatError(path, f"not UTF-8 text (byte {exc.start})") from exc
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    try:
        return parse_runbook_text(text, rel, default_id=runbook_id_for(path, root), stem=path.stem)
    except ValueError as exc:
        raise RunbookFormatError(path, str(exc)) from exc


def iter_markdown_files(root: Path, *, include_index: bool = False) -> list[Path]:
    """Every `*.md` file under `root`, sorted by relative path.

    Skips hidden files and folders, and (unless `include_index`) files whose name starts with
    `_` such as Hugo's `_index.md` section pages. A single file as `root` is returned as is.
    """
    root = Path(root)
    if root.is_file():
        return [root]
    found = []
    for path in root.rglob("*.md"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not include_index and path.name.startswith("_"):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def load_runbooks(root: Path) -> tuple[list[Runbook], list[RunbookFormatError]]:
    """Parse every runbook under `root`; bad files are reported, never abort the import.

    A file whose id repeats an earlier file's id (possible only with explicit `id:` keys) is
    reported as an error and left out.
    """
    root = Path(root)
    base = root.parent if root.is_file() else root
    runbooks: list[Runbook] = []
    errors: list[RunbookFormatError] = []
    seen: dict[str, str] = {}
    for path in iter_markdown_files(root):
        try:
            runbook = parse_runbook_file(path, base)
        except RunbookFormatError as exc:
            errors.append(exc)
            continue
        if runbook.id in seen:
            errors.append(
                RunbookFormatError(path, f"duplicate runbook id {runbook.id!r} (already used by {seen[runbook.id]})")
            )
            continue
        seen[runbook.id] = runbook.source
        runbooks.append(runbook)
    return runbooks, errors


def iter_headings(lines: list[str]) -> Any:
    """Yield (level, title, line index) for each heading outside fenced code.

    For setext headings the index is that of the text line (the underline follows it).
    """
    fence: str | None = None
    prev_text: str | None = None
    prev_idx = -1
    for i, line in enumerate(lines):
        m = FENCE_RE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            prev_text = None
            continue
        if m:
            fence = m.group(1)
            prev_text = None
            continue
        h = HEADING_RE.match(line)
        if h:
            yield len(h.group(1)), clean_heading(h.group(2)), i
            prev_text = None
            continue
        s = SETEXT_RE.match(line)
        if s and prev_text is not None:
            yield (1 if s.group(1)[0] == "=" else 2), clean_heading(prev_text), prev_idx
            prev_text = None
            continue
        stripped = line.strip()
        if stripped and not stripped.startswith(("-", "*", "+", ">", "|", "<")) and not line.startswith("    "):
            prev_text, prev_idx = stripped, i
        else:
            prev_text = None


def clean_heading(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](link) -> text
    text = text.replace("`", "").replace("**", "").strip()
    return text
