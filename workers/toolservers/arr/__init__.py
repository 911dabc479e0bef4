"""The MCP arr-suite server: Sonarr, Radarr and Prowlarr as tools (`server.py`), over each app's
REST API (`client.py`), with typed results (`models.py`). Run it as
`python -m workers.toolservers.arr`."""
