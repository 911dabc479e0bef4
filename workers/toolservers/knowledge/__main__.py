"""`python -m workers.toolservers.knowledge`: serve the knowledge-base MCP tools (server.py)."""

import sys

from workers.toolservers.knowledge.server import main

if __name__ == "__main__":
    sys.exit(main())
