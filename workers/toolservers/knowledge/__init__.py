"""The MCP knowledge server: runbooks, past decisions, operator docs and trust records for any
agent or MCP client (`server.py`). Run it as `python -m workers.toolservers.knowledge`."""
