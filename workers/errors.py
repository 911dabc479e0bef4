"""Errors a user sees as one clear line (what is wrong and what to do), never a traceback."""

from __future__ import annotations


class AgenticError(Exception):
    """An error with a message meant for the operator. The CLI prints it and exits 2."""

    exit_code = 2
