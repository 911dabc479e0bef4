"""The MCP arr-suite server's old entry point, kept while the stack's `mcp-arr` part starts
`python -m workers.mcp_arr`: it runs workers.toolservers.arr."""

import sys

from workers.toolservers.arr.server import main

if __name__ == "__main__":
    sys.exit(main())
