"""The MCP coding server: Git repositories (AGENTIC_REPOS) read, parsed, and changed as reviewed diffs."""
