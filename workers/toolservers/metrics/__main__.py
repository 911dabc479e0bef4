"""`python -m workers.toolservers.metrics`: serve the Prometheus/Alertmanager MCP tools (server.py)."""

import sys

from workers.toolservers.metrics.server import main

if __name__ == "__main__":
    sys.exit(main())
