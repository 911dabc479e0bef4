"""The MCP arr-suite server: Sonarr, Radarr and Prowlarr as tools (`server.py`). Run it as
`python -m workers.toolservers.arr`."""
