"""One real part at a time: PostgreSQL (pgserver), the Temporal dev server, an MCP server, a
process of the platform, the Helm chart, against fakes of what is outside."""
