"""The gateway (docs/gateway.md): the OpenAI-compatible endpoint over the agents and answers to
approvals, behind API keys (`agentic keys …`)."""
