"""`python -m workers.toolservers.infra`: serve the Kubernetes/Talos MCP tools (server.py)."""

import sys

from workers.toolservers.infra.server import main

if __name__ == "__main__":
    sys.exit(main())
