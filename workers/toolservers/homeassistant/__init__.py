"""The MCP Home Assistant server: Home Assistant's REST API as tools (`server.py`). Run it as
`python -m workers.toolservers.homeassistant`."""
