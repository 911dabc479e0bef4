# One image for every platform process; the chart picks the entrypoint per Deployment:
#   python -m workers.worker              the Temporal worker
#   python -m workers.intake              the alert intake (GET /healthz, POST /alerts, POST /events)
#   python -m workers.toolservers.infra   the MCP infrastructure server (GET /healthz, /mcp)
#   agentic ...                           the CLI
# Runs as a non-root user (10001, the chart's runAsUser) with a read-only root filesystem:
# only /tmp (an emptyDir in the chart) is written; AGENTIC_DATA_DIR points there.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU build of torch first, so sentence-transformers does not pull the CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY agentic_core ./agentic_core
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
RUN pip install . \
    && python -m compileall -q /opt/venv

FROM python:3.11-slim

# git (and ssh for a push over a deploy key): the coding tools (workers.toolservers.coding) run it.
RUN apt-get update && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 agentic \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin agentic
COPY --from=build /opt/venv /opt/venv
COPY docs /app/docs
COPY deploy/waves.yaml /app/deploy/waves.yaml
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    AGENTIC_DATA_DIR=/tmp/agentic \
    AGENTIC_DOCS_DIR=/app/docs \
    AGENTIC_WAVES_FILE=/app/deploy/waves.yaml \
    AGENTIC_HOST=0.0.0.0
WORKDIR /app
USER 10001:10001
EXPOSE 8088 8091
CMD ["agentic", "--help"]
