"""`python -m workers.toolservers.coding`: serve the Git repository MCP tools (server.py)."""

import sys

from workers.toolservers.coding.server import main

if __name__ == "__main__":
    sys.exit(main())
