"""The MCP infrastructure server: Kubernetes and Talos tools (`server.py`; the Kubernetes
operations themselves are activities/kube/ops.py). Run it as `python -m workers.toolservers.infra`."""
