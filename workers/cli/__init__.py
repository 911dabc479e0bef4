"""`agentic`: the command line. `agentic X …` lives in workers/cli/X.py, each module a typer `app`:

    main.py       the root app, `up`, `down`, `status`, and `main` (the console script)
    decide.py     `approve`, `acknowledge`, `ignore`, `modify` (top level)
    runbooks.py   `runbooks import|list|search|show|stats`
    docs.py       `docs ingest|search`
    alert.py      `alert send`
    incidents.py  `incidents list|show`
    rollout.py    `rollout start|status`
    telegram.py   `telegram setup|log`
    schedules.py  `schedules apply|list`
    report.py     `report weekly`
    review.py     `review run`
    agents.py     `agents route`
    options.py    what they share: `--data-dir`, `--json`, the settings read, the consoles

The work behind a command is in the client modules beside it (workers/*_client.py,
workers/schedules.py) or the stack (workers/stack/); a command parses, calls and prints.
"""

from workers.cli.main import app, main

__all__ = ["app", "main"]
