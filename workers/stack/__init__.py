"""The embedded stack: `agentic up`, `agentic status`, `agentic down`.

`agentic up` starts every part of the platform as a child process, checks each one's
health, prints what runs where, then supervises: a part that dies is restarted, for as long
as the stack runs, after a wait that doubles with each crash in a row (up to a cap) and starts
over once the part had stayed healthy for a while (`RestartPolicy`). A part that keeps
crashing is *down*: the supervisor posts a generic event for it to the intake and, with
Telegram configured, messages the chat itself (`PartAlerts`); a `resolved` event follows when
the part is healthy again. Ctrl-C or `agentic down` stops everything in reverse order. All
state is in the data dir, so a second `agentic up` resumes with every incident, ledger row and
indexed runbook intact.

Layout of the data dir::

    stack.json          what runs where (pids, ports, URLs), written by the supervisor
    stack.lock          held by the running supervisor (one stack per data dir)
    secrets/            generated credentials (0600): PostgreSQL password, llama.cpp key
    postgres/           PostgreSQL 16 data directory (pgserver's binaries)
    temporal/           the Temporal dev server's SQLite file
    qdrant/             Qdrant Edge shards (opened by the worker only)
    logs/<part>.log     each part's output

Modules, one job each::

    state.py       stack.json (StackState, read_state, pid_alive)
    env.py         the generated secrets and what every child and command connects with
                   (EmbeddedSecrets, effective_settings, platform_settings, child_env)
    parts.py       the parts: one function each, `build_parts` lists them in start order
    health.py      the parts' health checks
    postgres.py    the embedded PostgreSQL's binaries and initdb
    supervisor.py  `agentic up`: start phase by phase, watch, restart, stop (Supervisor)
    restarts.py    the restart policy: back-off, when a part is down (RestartPolicy)
    alerts.py      telling the operator a part is down or back (PartAlerts)
    status.py      `agentic status` and `agentic down` (stack_health, stop_stack)
"""
