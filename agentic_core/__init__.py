"""The shared vocabulary: pydantic models and pure policy functions. No I/O."""
