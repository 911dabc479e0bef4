"""The MCP infrastructure server's old entry point, kept while the stack's `mcp` part starts
`python -m workers.mcp_infra`: it runs workers.toolservers.infra."""

import sys

from workers.toolservers.infra.server import main

if __name__ == "__main__":
    sys.exit(main())
