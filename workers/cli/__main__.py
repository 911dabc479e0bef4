"""`python -m workers.cli`: the `agentic` command (`agentic up --detach` runs itself this way)."""

from workers.cli.main import main

main()
