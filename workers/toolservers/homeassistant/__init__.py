"""The MCP Home Assistant server: Home Assistant's REST API as tools (`server.py`), through its
client (`client.py`), with typed results (`models.py`). Run it as
`python -m workers.toolservers.homeassistant`."""
