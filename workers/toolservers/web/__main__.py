"""`python -m workers.toolservers.web`: serve the web MCP tools (server.py)."""

import sys

from workers.toolservers.web.server import main

if __name__ == "__main__":
    sys.exit(main())
