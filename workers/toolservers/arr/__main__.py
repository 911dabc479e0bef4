"""`python -m workers.toolservers.arr`: serve the Sonarr/Radarr/Prowlarr MCP tools (server.py)."""

import sys

from workers.toolservers.arr.server import main

if __name__ == "__main__":
    sys.exit(main())
