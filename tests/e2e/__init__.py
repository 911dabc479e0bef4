"""The whole stack (`agentic up` and the real processes), driven through its public surfaces;
marked slow."""
