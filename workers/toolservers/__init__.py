"""The platform's MCP tool servers, one family: each serves its tools over streamable HTTP at
/mcp, with a bearer token (or loopback only), `GET /healthz`, `error:` lines and exit 2 for
start-up problems, and a graceful stop on SIGTERM.

- `common.py`: what every server shares: its settings (options with defaults from the
  environment; secrets only from the environment), strict tools (unknown
  arguments refused), the annotations (`READ_ONLY`, `MUTATING_IDEMPOTENT`, ...), one error
  wrapper (`tool_errors`: an app's exception → a tool error the model can act on), serving
  with auth and `/healthz`.
- `serving.py`: the process around a server (`ToolServer`: the options every server takes, the
  start-up in one order, serving over streamable HTTP until SIGTERM, exit 2 for a start-up error).
- `app_api.py`: the home applications' REST APIs as their servers call them (Home Assistant,
  the arr suite), every failure a tool error that says what to do.
- one sub-package per server, run as `python -m workers.toolservers.<name>`:
  `server.py` holds the MCP server (its tools, `build_server`) and its process (`PROCESS`, a
  `serving.ToolServer`: its own options and `configure`; `main`); where the server talks to
  an outside app, `client.py` holds that app's client; `models.py` the tools' typed results
  where they are many.

A new server (metrics, Git repositories, web search...) is one more sub-package of the same
shape; its tool names join their family in `agentic_core/tools.py`.
"""
