"""The MCP web server: SearXNG search and page fetching behind the domain allow-list, read-only
tools (`server.py`); the egress rules and the one HTTP client that applies them (`egress.py`);
readable text out of HTML (`extract.py`); SearXNG's JSON API (`searxng.py`). Run it as
`python -m workers.toolservers.web`."""
