"""Small wording helpers for texts people read (the CLI, notifications, digests)."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`counted(1, "incident")` -> "1 incident"; `counted(3, "incident")` -> "3 incidents"."""
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
