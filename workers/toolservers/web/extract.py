"""Readable text out of a fetched page, as Markdown: trafilatura for HTML (the main content:
navigation, footers and boilerplate left out; headings, lists, tables and links kept), the text
itself for text/plain, Markdown and JSON. Pure functions (CPU only: the server runs them in a
thread)."""

from __future__ import annotations

from dataclasses import dataclass

import trafilatura

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset({"text/plain", "text/markdown", "text/x-markdown", "application/json", "text/csv"})


class NotText(ValueError):
    """The page is not something the tools read (an image, a PDF, a binary)."""


@dataclass(frozen=True)
class Extracted:
    title: str
    markdown: str
    method: str  # trafilatura | baseline | text


def _decode(body: bytes, charset: str | None) -> str:
    for encoding in (charset, "utf-8"):
        if not encoding:
            continue
        try:
            return body.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", errors="replace")


def extract(body: bytes, content_type: str, charset: str | None, url: str) -> Extracted:
    """The page's readable text as Markdown, and its title."""
    if content_type in TEXT_TYPES or (content_type.startswith("text/") and content_type not in HTML_TYPES):
        text = _decode(body, charset)
        return Extracted(title="", markdown=text.strip(), method="text")
    if content_type and content_type not in HTML_TYPES:
        raise NotText(f"{url} is {content_type}, not a page of text: web_fetch reads HTML and text only")
    html = _decode(body, charset)
    meta = trafilatura.extract_metadata(html, default_url=url)
    title = (meta.title or "").strip() if meta is not None else ""
    markdown = trafilatura.extract(
        html,
        url=url,
        output_format="markdown",
        include_links=True,
        include_tables=True,
        include_comments=False,
        favor_recall=True,
        deduplicate=False,
    )
    if markdown and markdown.strip():
        return Extracted(title=title, markdown=markdown.strip(), method="trafilatura")
    text = trafilatura.html2txt(html) or ""  # too little "content" for the extractor: all the text
    return Extracted(title=title, markdown=" ".join(text.split()), method="baseline")
