"""What every part of `agentic up`, and every command and process outside it, connects with.

- `EmbeddedSecrets`: the credentials the embedded stack generates once into DATA_DIR/secrets (0600);
- `effective_settings`: the settings with the embedded parts' addresses and those secrets filled in
  (what `agentic up` hands every child);
- `platform_settings`: the same for a command or a process outside the supervisor: the secrets are
  only read, and the addresses are those of the stack that runs on the data dir (stack.json);
- `settings_env`, `child_env`: the environment a child process rebuilds its settings from (secrets
  go by environment, never on a command line).
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from workers.settings import Settings
from workers.stack.state import pid_alive, read_state


class EmbeddedSecrets:
    """Credentials the embedded stack generates once and keeps in `data/secrets` (0600)."""

    def __init__(self, data: Path) -> None:
        self.dir = data / "secrets"

    def read(self, name: str) -> str | None:
        """The secret `name` (e.g. `postgres.password`) if it was generated, else None."""
        path = self.dir / name
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def get(self, name: str) -> str:
        """The secret `name`, generated (and kept, 0600) on first use."""
        found = self.read(name)
        if found is not None:
            return found
        path = self.dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        value = secrets.token_urlsafe(24)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return value

    def postgres_password(self) -> str:
        return self.get("postgres.password")


def effective_settings(settings: Settings, *, generate: bool = True) -> Settings:
    """The settings every child process gets: embedded parts resolved to concrete addresses and secrets.

    `generate=False` (for commands and processes outside `agentic up`) only reads the secrets the
    stack generated: a missing one stays unset, and nothing is written to the data dir.
    """
    data = settings.data_path
    sec = EmbeddedSecrets(data)

    def secret(name: str) -> SecretStr | None:
        value = sec.get(name) if generate else sec.read(name)
        return SecretStr(value) if value is not None else None

    update: dict[str, Any] = {"data_dir": data}
    if settings.postgres_embedded and (pw := secret("postgres.password")) is not None:
        update["postgres_dsn"] = SecretStr(
            f"postgresql://postgres:{pw.get_secret_value()}@{settings.host}:{settings.postgres_port}/postgres"
        )
    if settings.llm_embedded and settings.llm_api_key is None:
        update["llm_api_key"] = secret("llm.key")
    if settings.intake_token is None:
        update["intake_token"] = secret("intake.token")
    if settings.mcp_token is None and settings.mcp_infra_url is None:
        update["mcp_token"] = secret("mcp.token")
    if settings.telegram_token is not None and settings.telegram_callback_secret is None:
        update["telegram_callback_secret"] = secret("telegram.secret")
    if settings.mcp_infra_url is None and not cluster_configured(settings):
        update["mcp_infra_enabled"] = False  # no cluster: the `mcp` part is disabled, the gateway skips it
    return settings.model_copy(update=update)


# The setting that holds each embedded part's port (`agentic up` names it when the port is taken;
# `stack_addresses` takes the running stack's ports from stack.json).
PORT_SETTINGS: dict[str, str] = {
    "postgres": "postgres_port",
    "temporal": "temporal_port",
    "llm": "llm_port",
    "mcp": "mcp_infra_port",
    "mcp-knowledge": "mcp_knowledge_port",
    "mcp-ha": "mcp_ha_port",
    "mcp-arr": "mcp_arr_port",
    "mcp-metrics": "mcp_metrics_port",
    "mcp-coding": "mcp_coding_port",
    "mcp-web": "mcp_web_port",
    "intake": "intake_port",
    "gateway": "gateway_port",
    "bot": "bot_port",
}


def stack_addresses(settings: Settings) -> Settings:
    """`settings` on the addresses of the stack that runs on its data dir (stack.json): the host,
    the ports of its embedded parts, its Temporal target, namespace and task queue. Unchanged when
    no supervisor runs there. So `agentic … --data-dir D` reaches the stack on D whatever ports it
    was started with."""
    st = read_state(settings.data_path)
    if st is None or not pid_alive(st.supervisor_pid):
        return settings
    update: dict[str, Any] = {"temporal_namespace": st.temporal_namespace, "task_queue": st.task_queue}
    if st.host:
        update["host"] = st.host
    for name, part in st.parts.items():
        field_name = PORT_SETTINGS.get(name)
        if field_name and part.mode == "embedded" and part.port:
            update[field_name] = part.port
    temporal = st.parts.get("temporal")
    if temporal is not None and temporal.mode == "embedded":
        update["temporal_address"] = None  # host and temporal_port (above) make the target
    else:
        update["temporal_address"] = st.temporal_target
    return settings.model_copy(update=update)


def platform_settings(settings: Settings) -> Settings:
    """What every command and process outside the supervisor connects with: the effective settings
    every part of `agentic up` gets (the embedded PostgreSQL's generated password, the intake and
    MCP tokens, read from DATA_DIR/secrets, never created) on the addresses of the stack that runs
    on the data dir (`stack_addresses`). Explicit external services (a DSN, a Temporal address of
    one's own) are kept."""
    return effective_settings(stack_addresses(settings), generate=False)


def settings_env(settings: Settings) -> dict[str, str]:
    """AGENTIC_* variables that rebuild `settings` in a child process (secrets go by env, never argv)."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"AGENTIC_{name.upper()}"] = str(value.value if hasattr(value, "value") else value)
    return env


# The directory the running `workers` package was imported from: the checkout, or site-packages.
CODE_ROOT = Path(__file__).resolve().parents[2]


# How the stack starts a module of its own: `-P` (Python 3.11+) keeps the working directory off
# sys.path, so the module comes from PYTHONPATH's `CODE_ROOT` (`with_code_path`), never from a
# `workers` directory that happens to be where the process starts.
PYTHON_M = (sys.executable, "-P", "-m")


def with_code_path(env: dict[str, str]) -> dict[str, str]:
    """`env` with `CODE_ROOT` first on PYTHONPATH. The parts start in the data dir, where Python
    finds the project through its installation instead; with a second checkout, a copy or a
    worktree sharing one virtual environment, that is another tree's code; and the supervisor
    starts in the shell's directory, which may be another checkout. With `PYTHON_M`, every part
    runs the code of the `agentic` that started it."""
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(CODE_ROOT)]
    return {**env, "PYTHONPATH": os.pathsep.join([str(CODE_ROOT), *rest])}


def child_env(settings: Settings) -> dict[str, str]:
    env = with_code_path({k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")})
    env.update(settings_env(settings))
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def cluster_configured(settings: Settings) -> bool:
    return (
        settings.kubeconfig is not None
        or bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        or (Path.home() / ".kube" / "config").exists()
    )
