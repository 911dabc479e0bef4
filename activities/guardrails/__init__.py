"""Guardrail events as activities: `guardrails.record` (`activities.guardrails.activities`)."""
