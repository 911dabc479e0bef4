"""The MCP metrics server: Prometheus's HTTP API (and Alertmanager's) as read-only tools
(`server.py`), through their clients (`client.py`), with typed results (`models.py`). Run it as
`python -m workers.toolservers.metrics`."""
