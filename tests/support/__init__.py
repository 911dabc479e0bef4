"""Helpers the tests share: fakes of outside services speaking their wire formats, servers and
clients the tests start, and the tools the tests use (capture_history, check_layers)."""
