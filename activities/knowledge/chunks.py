"""Operator documentation as knowledge: markdown split by section into chunks small enough for
the embedding model (`chunk_text`, `chunk_markdown`, `load_docs`), headings kept as context."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from activities.knowledge.markdown import (
    FENCE_RE,
    HEADING_RE,
    SETEXT_RE,
    iter_headings,
    iter_markdown_files,
    load_front_matter,
    split_front_matter,
)
from agentic_core.models import DocChunk

DEFAULT_MAX_CHARS = 1200  # all-MiniLM-L6-v2 reads 256 word pieces, roughly 1,000-1,200 characters


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
        m = FENCE_RE.match(line)
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
            fm_title = load_front_matter(fm_source, fmt).get("title")
        except ValueError:
            fm_title = None
        title = str(fm_title).strip() if isinstance(fm_title, str | int | float) else None
    lines = body.splitlines()
    headings = list(iter_headings(lines))
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
        if content_start < len(lines) and SETEXT_RE.match(lines[content_start]) and not HEADING_RE.match(lines[idx]):
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
