"""`python -m workers.toolservers.homeassistant`: serve the Home Assistant MCP tools (server.py)."""

import sys

from workers.toolservers.homeassistant.server import main

if __name__ == "__main__":
    sys.exit(main())
