"""Runbook and documentation markdown: parsing runbook files and chunking documents.

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

`iter_markdown_files` skips files whose name starts with `_` (Hugo section pages such as
`_index.md`, which hold only navigation front matter) and anything under a hidden folder.
Documentation chunking can ask for them with `include_index=True`.

Documentation chunking
----------------------
`chunk_markdown` splits a document into sections at its headings (ATX `#` and setext
headings, never inside fenced code), one `DocChunk` per non-empty section with the heading
path (`Configuration > Temporal`) and a stable id `<relative path>#<heading slug>:<part>`;
sections longer than `max_chars` are split at paragraph, then line boundaries.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentic_core.models import AutomationLevel, DocChunk, Runbook

__all__ = [
    "RunbookFormatError",
    "chunk_markdown",
    "chunk_text",
    "iter_markdown_files",
    "load_docs",
    "load_runbooks",
    "looks_like_alert_name",
    "parse_runbook_file",
    "parse_runbook_text",
    "runbook_id_for",
    "split_front_matter",
]

DEFAULT_MAX_CHARS = 1200  # all-MiniLM-L6-v2 reads 256 word pieces, roughly 1,000-1,200 characters

_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ID_BAD_CHARS = re.compile(r"[^A-Za-z0-9._/-]+")
_ALERT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_NOT_ALERT_NAMES = frozenset(
    {"readme", "changelog", "contributing", "license", "index", "overview", "introduction", "summary", "todo"}
)
_KNOWN_KEYS = ("id", "title", "match", "actions", "automation_level", "allow_namespaces")


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


def _load_front_matter(source: str, fmt: str) -> dict[str, Any]:
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
    for _level, title, _ in _iter_headings(markdown.splitlines()):
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
    meta = _load_front_matter(fm_source, fmt) if fm_source is not None else {}
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

    actions = meta.get("actions") or []
    if not isinstance(actions, list):
        raise ValueError(f"front-matter 'actions' must be a list of {{tool, arguments}}, got {type(actions).__name__}")
    for i, action in enumerate(actions):
        if not isinstance(action, dict):
            raise ValueError(f"front-matter actions[{i}] must be a mapping with 'tool' and 'arguments'")
        if "arguments" in action and action["arguments"] is not None and not isinstance(action["arguments"], dict):
            raise ValueError(f"front-matter actions[{i}].arguments must be a mapping")

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
                "automation_level": level,
                "allow_namespaces": allow_namespaces or [],
            }
        )
    except ValidationError as exc:
        raise ValueError(_format_validation_error(exc)) from exc
    runbook.content_hash = runbook.compute_hash()
    return runbook


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


# --------------------------------------------------------------------------------------
# documentation chunking


def _iter_headings(lines: list[str]) -> Any:
    """Yield (level, title, line index) for each heading outside fenced code.

    For setext headings the index is that of the text line (the underline follows it).
    """
    fence: str | None = None
    prev_text: str | None = None
    prev_idx = -1
    for i, line in enumerate(lines):
        m = _FENCE_RE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            prev_text = None
            continue
        if m:
            fence = m.group(1)
            prev_text = None
            continue
        h = _HEADING_RE.match(line)
        if h:
            yield len(h.group(1)), _clean_heading(h.group(2)), i
            prev_text = None
            continue
        s = _SETEXT_RE.match(line)
        if s and prev_text is not None:
            yield (1 if s.group(1)[0] == "=" else 2), _clean_heading(prev_text), prev_idx
            prev_text = None
            continue
        stripped = line.strip()
        if stripped and not stripped.startswith(("-", "*", "+", ">", "|", "<")) and not line.startswith("    "):
            prev_text, prev_idx = stripped, i
        else:
            prev_text = None


def _clean_heading(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [text](link) -> text
    text = text.replace("`", "").replace("**", "").strip()
    return text


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "section"


def _split_long(text: str, max_chars: int) -> list[str]:
    """Split text into parts of at most max_chars, at blank lines, then lines, then hard."""
    if len(text) <= max_chars:
        return [text]
    blocks = _paragraphs(text)
    pieces: list[str] = []
    for block in blocks:
        if len(block) <= max_chars:
            pieces.append(block)
            continue
        line_buf = ""
        for line in block.splitlines():
            while len(line) > max_chars:
                if line_buf:
                    pieces.append(line_buf)
                    line_buf = ""
                pieces.append(line[:max_chars])
                line = line[max_chars:]
            if line_buf and len(line_buf) + 1 + len(line) > max_chars:
                pieces.append(line_buf)
                line_buf = line
            else:
                line_buf = f"{line_buf}\n{line}" if line_buf else line
        if line_buf:
            pieces.append(line_buf)
    parts: list[str] = []
    buf = ""
    for piece in pieces:
        if buf and len(buf) + 2 + len(piece) > max_chars:
            parts.append(buf)
            buf = piece
        else:
            buf = f"{buf}\n\n{piece}" if buf else piece
    if buf:
        parts.append(buf)
    return [p.strip() for p in parts if p.strip()]


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, keeping fenced code blocks whole."""
    blocks: list[str] = []
    cur: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        m = _FENCE_RE.match(line)
        if fence is None and m:
            fence = m.group(1)
        elif fence is not None and m and m.group(1)[0] == fence[0]:
            fence = None
        if fence is None and not line.strip():
            if cur:
                blocks.append("\n".join(cur))
                cur = []
            continue
        cur.append(line)
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def chunk_text(
    text: str, source: str, *, max_chars: int = DEFAULT_MAX_CHARS, title: str | None = None
) -> list[DocChunk]:
    """Chunk markdown text (front matter already removed or not) from `source` by section."""
    try:
        fm_source, fmt, body = split_front_matter(text)
    except ValueError:
        fm_source, fmt, body = None, "", text
    if title is None and fm_source is not None:
        try:
            fm_title = _load_front_matter(fm_source, fmt).get("title")
        except ValueError:
            fm_title = None
        title = str(fm_title).strip() if isinstance(fm_title, str | int | float) else None
    lines = body.splitlines()
    headings = list(_iter_headings(lines))
    doc_title = title or Path(source).stem
    # Sections: (heading path, first content line, end line)
    sections: list[tuple[str, int, int]] = []
    stack: list[tuple[int, str]] = []
    starts = [(idx, level, name) for level, name, idx in headings]
    preamble_end = starts[0][0] if starts else len(lines)
    sections.append((doc_title, 0, preamble_end))
    for n, (idx, level, name) in enumerate(starts):
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, name or "section"))
        content_start = idx + 1
        if content_start < len(lines) and _SETEXT_RE.match(lines[content_start]) and not _HEADING_RE.match(lines[idx]):
            content_start += 1  # skip a setext underline
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        sections.append((" > ".join(s[1] for s in stack), content_start, end))

    base = Path(source).with_suffix("").as_posix()
    chunks: list[DocChunk] = []
    seen: dict[str, int] = {}
    for heading, start, end in sections:
        content = "\n".join(lines[start:end]).strip()
        if not content:
            continue
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            slug = f"{slug}-{count + 1}"
        for part, piece in enumerate(_split_long(content, max_chars)):
            digest = hashlib.sha256(f"{source}\n{heading}\n{piece}".encode()).hexdigest()
            chunks.append(
                DocChunk(id=f"{base}#{slug}:{part}", source=source, heading=heading, text=piece, content_hash=digest)
            )
    return chunks


def chunk_markdown(path: Path, root: Path, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[DocChunk]:
    """Split one documentation file into section chunks (see the module docstring)."""
    path = Path(path)
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        rel = path.name
    text = path.read_text(encoding="utf-8", errors="replace")
    return chunk_text(text, rel, max_chars=max_chars)


def load_docs(root: Path, *, max_chars: int = DEFAULT_MAX_CHARS) -> list[DocChunk]:
    """Chunk every markdown file under `root` (index pages included)."""
    root = Path(root)
    base = root.parent if root.is_file() else root
    chunks: list[DocChunk] = []
    for path in iter_markdown_files(root, include_index=True):
        chunks.extend(chunk_markdown(path, base, max_chars=max_chars))
    return chunks
