"""The MCP knowledge server: runbooks, past decisions, operator docs and trust records for any
agent or MCP client (`server.py`), over Temporal and the ledger (`client.py`), with typed
results (`models.py`). Run it as `python -m workers.toolservers.knowledge`."""
