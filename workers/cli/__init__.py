"""`agentic`: the command line (`workers.cli.main`: the root app and `main`, the console script)."""

from workers.cli.main import app, main

__all__ = ["app", "main"]
