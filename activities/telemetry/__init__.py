"""Telemetry: the platform's Prometheus metrics (`metrics`) and OpenTelemetry traces (`tracing`).

Both are recorded where the work happens, in the activities and the processes, never in workflow
code (which replays): Temporal's `TracingInterceptor` makes the workflow's spans, replay-aware.
See docs/observability.md.
"""
