"""The MCP Home Assistant server's old entry point, kept while the stack's `mcp-ha` part starts
`python -m workers.mcp_homeassistant`: it runs workers.toolservers.homeassistant."""

import sys

from workers.toolservers.homeassistant.server import main

if __name__ == "__main__":
    sys.exit(main())
