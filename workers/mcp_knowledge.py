"""The MCP knowledge server's old entry point, kept while the stack's `mcp-knowledge` part starts
`python -m workers.mcp_knowledge`: it runs workers.toolservers.knowledge."""

import sys

from workers.toolservers.knowledge.server import main

if __name__ == "__main__":
    sys.exit(main())
