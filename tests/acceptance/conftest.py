"""Acceptance tests: README.md, read by a newcomer and done as written.

Each test runs the README's commands exactly as README.md prints them (a command that is not
in README.md is refused by `Stack.readme`), through the public surfaces only: the `agentic`
console script of the venv (or `python -m workers.cli` where there is none), the `temporal`
CLI of the venv, `make`, and HTTP to the intake and MCP endpoints with the tokens from
DATA_DIR/secrets. No test imports the platform's own modules; the outside world (Telegram,
a cluster, Home Assistant, Sonarr, a cloud model) is played by the fakes in tests/, which
speak those services' wire formats.

Stacks (`agentic up --detach` on a temporary data dir, every part on its own free port through
the AGENTIC_*_PORT variables, as tests/conftest.py `stack_env` sets them):

- `first_stack`: the embedded defaults, nothing configured: the README's quick start,
  reports, earned autonomy. Its README flow is sequential, so one stack serves them all.
- `configured_stack`: the Configuration block's second stack, pointed at the first
  stack's Temporal (namespace `ops`), PostgreSQL (role and database `agentic`) and LLM, with
  Home Assistant, Sonarr, a cloud model, a cluster (kmock) and Telegram (the Bot API emulator)
  configured: the Configuration, cluster, rollout and Telegram sections.

Both are package-scoped: started by the first acceptance test that needs them, stopped after
the last one of tests/acceptance (not left running through the rest of `make test`). A failed
test gets the tail of every part's log of the stacks it used (a report section).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.env import CORPORA, REPO, free_port, stack_env

T = TypeVar("T")

README_PATH = REPO / "README.md"
VENV_BIN = Path(sys.executable).parent
UP_TIMEOUT = 300.0


# --------------------------------------------------------------------------- README.md


@dataclass(frozen=True)
class Command:
    line: str  # the command as README.md prints it (continuation lines joined)
    comment: str  # the comment beside it, if any
    block: int  # which ```sh block


def _strip_comment(line: str) -> tuple[str, str]:
    m = re.search(r"\s#\s|\s#$", line)
    if m is None:
        return line.strip(), ""
    return line[: m.start()].strip(), line[m.end() :].strip()


class Readme:
    """The commands, exports and example output of README.md."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.commands: list[Command] = []
        self.exports: list[tuple[str, str]] = []
        self.code_blocks: list[tuple[str, str]] = []  # (language, body)
        for i, (lang, body) in enumerate(re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)):
            self.code_blocks.append((lang, body))
            if lang != "sh":
                continue
            pending = ""
            for raw in body.splitlines():
                line = pending + raw.strip()
                if line.endswith("\\"):
                    pending = line[:-1].strip() + " "
                    continue
                pending = ""
                if not line or line.startswith("#"):
                    continue
                cmd, comment = _strip_comment(line)
                if cmd.startswith("export "):
                    for item in shlex.split(cmd)[1:]:
                        name, _, value = item.partition("=")
                        self.exports.append((name, value))
                self.commands.append(Command(cmd, comment, i))

    def command(self, line: str) -> Command:
        for c in self.commands:
            if c.line == line:
                return c
        known = "\n  ".join(c.line for c in self.commands)
        raise AssertionError(f"README.md has no command {line!r}; its commands:\n  {known}")

    def exported(self, *names: str) -> dict[str, str]:
        """The values README.md exports for `names` (each must be there)."""
        found = dict(self.exports)
        missing = [n for n in names if n not in found]
        assert not missing, f"README.md exports none of {missing}"
        return {n: found[n] for n in names}

    def example_table(self) -> tuple[str, list[dict[str, str]]]:
        """The example output of `make run`: its first line and its rows (part, mode, where, pid, role)."""
        for lang, body in self.code_blocks:
            if lang == "" and body.startswith("all parts healthy"):
                lines = body.splitlines()
                rows = []
                for ln in lines:
                    if ln.startswith("│"):
                        cells = [c.strip() for c in ln.strip("│").split("│")]
                        rows.append(dict(zip(("part", "mode", "where", "pid", "role"), cells, strict=False)))
                return lines[0], rows
        raise AssertionError("README.md has no example output starting 'all parts healthy'")


README = Readme(README_PATH.read_text())


def program(name: str) -> list[str]:
    """What a README command's first word runs here: the venv's own scripts."""
    if name == "agentic":
        script = VENV_BIN / "agentic"
        return [str(script)] if script.exists() else [sys.executable, "-m", "workers.cli"]
    if name == "temporal":
        found = VENV_BIN / "temporal"
        return [str(found) if found.exists() else shutil.which("temporal") or "temporal"]
    if name == ".venv/bin/python":  # the repo's venv; in a worktree, the venv that runs the tests
        return [sys.executable]
    return [name]


def readme_argv(line: str, subst: dict[str, str] | None = None) -> list[str]:
    """The argv of a command exactly as README.md prints it; `subst` fills its placeholders
    (`inc-…`, `[--dry-run]`, ...)."""
    README.command(line)
    for placeholder, value in (subst or {}).items():
        assert placeholder in line, f"{placeholder!r} is not in {line!r}"
        line = line.replace(placeholder, value)
    argv = shlex.split(line)
    return [*program(argv[0]), *argv[1:]]


# --------------------------------------------------------------------------- running commands


class Ran(str):
    """A finished command: what ran, its exit status and output. As a string it is all of that,
    so `assert res.rc == 0, res` shows the whole story (pytest cuts other objects' reprs short)."""

    argv: list[str]
    rc: int
    out: str
    err: str
    seconds: float

    def __new__(cls, argv: list[str], rc: int, out: str, err: str, seconds: float) -> Ran:
        text = (
            f"$ {shlex.join(argv)}\n(exit {rc} after {seconds:.1f}s)\n"
            f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}"
        )
        self = super().__new__(cls, text)
        self.argv, self.rc, self.out, self.err, self.seconds = argv, rc, out, err, seconds
        return self

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def run(
    argv: list[str],
    env: dict[str, str],
    *,
    cwd: Path = REPO,
    timeout: float = 180,
    input: str | None = None,
) -> Ran:
    t0 = time.monotonic()
    try:
        res = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Ran(argv, -9, out, err + f"\n(killed: no answer within {timeout:.0f}s)", time.monotonic() - t0)
    return Ran(argv, res.returncode, res.stdout, res.stderr, time.monotonic() - t0)


def quiet_port() -> int:
    """A free port below the kernel's ephemeral range (`tests.support.env.free_port`)."""
    return free_port()


def base_env(data: Path) -> dict[str, str]:
    """The environment of a stack on `data`: tests/conftest.py `stack_env` (every embedded part on
    its own port through the AGENTIC_*_PORT variables, plus the bot's), the ports taken below the
    ephemeral range, the checkout's code first on the path."""
    env = stack_env(data)
    del env["AGENTIC_ROUTER_INDEX_AT_START"]  # the product's default, as a newcomer runs it
    env["AGENTIC_BOT_PORT"] = "0"
    for k in list(env):
        if k.startswith("AGENTIC_") and k.endswith("_PORT"):
            env[k] = str(quiet_port())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    for k in list(env):
        if k.startswith("TEMPORAL_"):  # the temporal CLI's own settings: set per stack below
            del env[k]
    return env


@dataclass
class Stack:
    """A stack started with `agentic up --detach`, and the shell its README commands run in."""

    name: str
    env: dict[str, str]
    namespace: str = "default"
    up_result: Ran | None = None

    @property
    def data(self) -> Path:
        return Path(self.env["AGENTIC_DATA_DIR"])

    def port(self, part: str) -> int:
        return int(self.env[f"AGENTIC_{part.upper()}_PORT"])

    def secret(self, name: str) -> str:
        return (self.data / "secrets" / name).read_text().strip()

    @property
    def temporal_address(self) -> str:
        return self.env.get("AGENTIC_TEMPORAL_ADDRESS") or f"127.0.0.1:{self.port('temporal')}"

    def shell_env(self, **extra: str) -> dict[str, str]:
        """The env of a shell beside the stack; the temporal CLI reads TEMPORAL_ADDRESS/NAMESPACE."""
        return {
            **self.env,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": self.namespace,
            **extra,
        }

    def agentic(self, *args: str, timeout: float = 180, cwd: Path = REPO, input: str | None = None) -> Ran:
        return run([*program("agentic"), *args], self.shell_env(), cwd=cwd, timeout=timeout, input=input)

    def readme(
        self,
        line: str,
        subst: dict[str, str] | None = None,
        *,
        cwd: Path = REPO,
        timeout: float = 180,
    ) -> Ran:
        """Run a command exactly as README.md prints it (`subst` fills its placeholders, e.g.
        `inc-…`, `[--dry-run]`), in a shell beside this stack."""
        return run(readme_argv(line, subst), self.shell_env(), cwd=cwd, timeout=timeout)

    def status(self) -> dict[str, Any]:
        res = self.agentic("status", "--json", timeout=60)
        doc: dict[str, Any] = json.loads(res.out) if res.out.strip().startswith("{") else {}
        return doc | {"rc": res.rc, "parts_by_name": {p["name"]: p for p in doc.get("parts", [])}}

    def incident(self, incident_id: str) -> dict[str, Any]:
        res = self.agentic("incidents", "show", incident_id, "--json", timeout=60)
        assert res.rc == 0, res
        return dict(res.json)

    def wait_incident(self, incident_id: str, statuses: set[str], within: float, what: str) -> dict[str, Any]:
        return eventually(
            lambda: st if (st := self.incident(incident_id))["status"] in statuses else None,
            within,
            f"{what} (incident {incident_id} with status in {sorted(statuses)})",
            describe=lambda: f"incident now: {json.dumps(self.incident(incident_id), indent=1)[-3000:]}",
        )

    def logs(self, lines: int = 30) -> str:
        out = []
        for log in sorted((self.data / "logs").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {self.name}: {log.name}\n" + "\n".join(tail))
        return "\n".join(out)


def eventually(
    check: Callable[[], T | None],
    within: float,
    what: str,
    every: float = 1.0,
    describe: Callable[[], str] | None = None,
) -> T:
    deadline = time.monotonic() + within
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = ""
            if describe is not None:
                with contextlib.suppress(Exception):
                    extra = "\n" + describe()
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r}){extra}")
        time.sleep(every)


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


@contextlib.contextmanager
def running_stack(name: str, env: dict[str, str], namespace: str = "default") -> Iterator[Stack]:
    """`agentic up --detach`, then (always) `agentic down`; a failed start fails with the logs."""
    stack = Stack(name, env, namespace=namespace)
    res = stack.agentic("up", "--detach", timeout=UP_TIMEOUT)
    stack.up_result = res
    try:
        if res.rc != 0:
            pytest.fail(f"`agentic up --detach` of the {name} stack failed:\n{res}\n{stack.logs()}", pytrace=False)
        yield stack
    finally:
        stack.agentic("down", timeout=120)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed acceptance test shows the tail of the logs of the stacks it used."""
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    if not rep.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        stack = value if isinstance(value, Stack) else getattr(value, "stack", None)
        if isinstance(stack, Stack):
            with contextlib.suppress(Exception):
                rep.sections.append((f"logs of the {stack.name} stack", stack.logs()))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="package")
def workdir() -> Iterator[Path]:
    """A short temporary directory (PostgreSQL's socket path must stay under 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="agentic-acc-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="package")
def first_stack(workdir: Path) -> Iterator[Stack]:
    """The README's stack: `agentic up` with the embedded defaults and nothing configured."""
    with running_stack("first", base_env(workdir / "first")) as stack:
        yield stack


@pytest.fixture(scope="package")
def corpus(first_stack: Stack) -> Ran:
    """`agentic runbooks import ../shared/corpora/prometheus-operator-runbooks`, run once, as
    README.md prints it, from the repository root (the path is relative to it)."""
    assert (REPO / "../shared/corpora/prometheus-operator-runbooks").resolve() == (
        CORPORA / "prometheus-operator-runbooks"
    ).resolve()
    return first_stack.readme("agentic runbooks import ../shared/corpora/prometheus-operator-runbooks", timeout=600)


@pytest.fixture(scope="package")
def outside() -> Iterator[Any]:
    """The loop the fakes of outside services run in (tests/acceptance/outside.py)."""
    from tests.acceptance.outside import BackgroundLoop

    loop = BackgroundLoop()
    try:
        yield loop
    finally:
        loop.close()


@dataclass
class Configured:
    """The second stack of the Configuration section, and the outside world it is pointed at."""

    stack: Stack
    first: Stack
    outside: Any  # BackgroundLoop
    cluster: Any  # outside.Cluster
    ha: Any  # tests.support.fake_apps.FakeHomeAssistant
    arr: dict[str, Any]  # app -> tests.support.fake_apps.FakeArr
    cloud: Any  # tests.support.fake_openai.FakeChatServer
    emu: Any  # tests.support.telegram_emulator.BotApiEmulator
    secrets: dict[str, str]  # what must never be printed
    runbooks_import: Ran  # `agentic runbooks import ./runbooks`, right after `agentic up`
    telegram_setup: Ran  # `agentic telegram setup`, right after that (docs/telegram.md's order)
    radarr_incident: str  # the incident of a stalled Radarr queue, alerted once the topics exist


TELEGRAM_CHAT = -1001234567890
TELEGRAM_APPROVER = 111111
STALLED = "The download is stalled with no connections"


def _stalled_queue() -> list[dict[str, Any]]:
    from tests.support.fake_apps import queue_record

    return [
        queue_record(11, "Show.S01E01.1080p"),
        queue_record(
            12,
            "Show.S01E02.1080p",
            status="warning",
            trackedDownloadStatus="warning",
            statusMessages=[{"title": "Show.S01E02.1080p", "messages": [STALLED]}],
            errorMessage=STALLED,
        ),
    ]


@pytest.fixture(scope="package")
def configured_stack(first_stack: Stack, outside: Any, workdir: Path) -> Iterator[Configured]:
    """README's Configuration: a second `agentic up` whose Temporal, PostgreSQL and planner are the
    first stack's (as `export AGENTIC_TEMPORAL_ADDRESS=… AGENTIC_TEMPORAL_NAMESPACE=ops`,
    `AGENTIC_POSTGRES_DSN=postgresql://agentic:…@…/agentic`, `AGENTIC_PLANNER_URL=…`), with a cloud
    model, Home Assistant and the arr apps configured (their exports), a cluster
    (`AGENTIC_KUBECONFIG`, kmock) and Telegram (`AGENTIC_TELEGRAM_*`, the Bot API emulator)."""
    import asyncpg

    from tests.acceptance.outside import emulated_cluster, serving
    from tests.support.fake_apps import FakeArr, FakeHomeAssistant
    from tests.support.fake_openai import FakeChatServer
    from tests.support.telegram_emulator import emulator

    (workdir / "kube").mkdir(exist_ok=True)
    cluster = outside.enter(emulated_cluster(workdir / "kube"))
    ha = outside.enter(serving(FakeHomeAssistant(token="ha-long-lived-token-0123456789")))
    arr = {
        "sonarr": outside.enter(serving(FakeArr(app="sonarr", api_key="sonarr-key-0001", queue=_stalled_queue()))),
        "radarr": outside.enter(serving(FakeArr(app="radarr", api_key="radarr-key-0002", queue=_stalled_queue()))),
        "prowlarr": outside.enter(serving(FakeArr(app="prowlarr", api_key="prowlarr-key-0003"))),
    }
    cloud = outside.enter(serving(FakeChatServer(name="gpt-4o-mini", status=503)))
    emu = outside.enter(emulator("7000000001:acceptance-bot-token"))

    # The first stack's services, prepared the way an operator prepares shared ones: a Temporal
    # namespace `ops` (the README's), a PostgreSQL role and database `agentic` (the README's DSN).
    readme = README.exported(
        "AGENTIC_TEMPORAL_ADDRESS",
        "AGENTIC_TEMPORAL_NAMESPACE",
        "AGENTIC_POSTGRES_DSN",
        "AGENTIC_PLANNER_URL",
        "AGENTIC_PLANNER_MODEL",
        "AGENTIC_CLOUD_MODEL",
        "AGENTIC_CLOUD_API_KEY",
        "AGENTIC_CLOUD_ESCALATE_BELOW",
        "AGENTIC_HA_URL",
        "AGENTIC_HA_TOKEN",
        "AGENTIC_SONARR_URL",
        "AGENTIC_SONARR_API_KEY",
        "AGENTIC_RADARR_URL",
        "AGENTIC_RADARR_API_KEY",
        "AGENTIC_PROWLARR_URL",
        "AGENTIC_PROWLARR_API_KEY",
    )
    namespace = readme["AGENTIC_TEMPORAL_NAMESPACE"]
    dsn = readme["AGENTIC_POSTGRES_DSN"]
    db_user = dsn.split("://", 1)[1].split(":", 1)[0]
    db_name = dsn.rsplit("/", 1)[1]
    created = run(
        [*program("temporal"), "operator", "namespace", "create", "--namespace", namespace],
        first_stack.shell_env(),
        timeout=60,
    )
    assert created.rc == 0, created
    eventually(
        lambda: (
            run(
                [*program("temporal"), "workflow", "list", "--namespace", namespace, "--limit", "1"],
                first_stack.shell_env(),
                timeout=30,
            ).rc
            == 0
        ),
        60,
        f"Temporal namespace {namespace}",
    )
    db_password = "agentic-db-password-7f3a9c"

    async def create_database() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=first_stack.port("postgres"),
            user="postgres",
            password=first_stack.secret("postgres.password"),
            database="postgres",
        )
        try:
            await conn.execute(f"CREATE ROLE {db_user} LOGIN PASSWORD '{db_password}'")
            await conn.execute(f"CREATE DATABASE {db_name} OWNER {db_user}")
        finally:
            await conn.close()

    outside.run(create_database())

    env = base_env(workdir / "second")
    cloud_key = "sk-acceptance-cloud-key-0123456789"
    env.update(
        AGENTIC_TEMPORAL_ADDRESS=first_stack.temporal_address,  # README: temporal.example:7233
        AGENTIC_TEMPORAL_NAMESPACE=namespace,
        AGENTIC_POSTGRES_DSN=f"postgresql://{db_user}:{db_password}@127.0.0.1:{first_stack.port('postgres')}/{db_name}",
        AGENTIC_PLANNER_URL=f"http://127.0.0.1:{first_stack.port('llm')}/v1",  # README: a vLLM pool
        AGENTIC_PLANNER_MODEL="smollm2",  # what the first stack's llama.cpp serves (README: qwen2.5-7b-instruct)
        # Not in the README's block: the first stack's llama.cpp wants its key (DATA_DIR/secrets/llm.key).
        AGENTIC_POOL_API_KEY=first_stack.secret("llm.key"),
        AGENTIC_CLOUD_MODEL=readme["AGENTIC_CLOUD_MODEL"],
        AGENTIC_CLOUD_API_KEY=cloud_key,
        AGENTIC_CLOUD_ESCALATE_BELOW=readme["AGENTIC_CLOUD_ESCALATE_BELOW"],
        # Offline: the "cloud" is a local OpenAI-compatible fake (docs/configuration.md AGENTIC_CLOUD_BASE_URL).
        AGENTIC_CLOUD_BASE_URL=cloud.base_url,
        AGENTIC_HA_URL=ha.url,
        AGENTIC_HA_TOKEN=ha.token,
        AGENTIC_SONARR_URL=arr["sonarr"].url,
        AGENTIC_SONARR_API_KEY=arr["sonarr"].api_key,
        AGENTIC_RADARR_URL=arr["radarr"].url,
        AGENTIC_RADARR_API_KEY=arr["radarr"].api_key,
        AGENTIC_PROWLARR_URL=arr["prowlarr"].url,
        AGENTIC_PROWLARR_API_KEY=arr["prowlarr"].api_key,
        AGENTIC_KUBECONFIG=str(cluster.kubeconfig),
        AGENTIC_TELEGRAM_TOKEN=emu.token,
        AGENTIC_TELEGRAM_CHAT_ID=str(TELEGRAM_CHAT),
        AGENTIC_TELEGRAM_APPROVERS=str(TELEGRAM_APPROVER),
        AGENTIC_TELEGRAM_API_BASE=emu.base_url,
    )
    secrets = {
        "the database password": db_password,
        "the pool API key": env["AGENTIC_POOL_API_KEY"],
        "the cloud API key": cloud_key,
        "the Home Assistant token": ha.token,
        "the Sonarr API key": arr["sonarr"].api_key,
        "the Telegram bot token": emu.token,
    }
    with running_stack("second", env, namespace=namespace) as stack:
        # The sequence of README's Configuration block and docs/telegram.md: up, the project's
        # runbooks, the Telegram topics. Then Radarr's queue stalls: its question (the model's
        # proposal takes a while on two cores) is on its way while the other tests run.
        runbooks = stack.readme("agentic runbooks import ./runbooks", timeout=300)
        setup = stack.agentic("telegram", "setup", timeout=120)
        radarr = ""
        if runbooks.rc == 0 and setup.rc == 0:
            sent = stack.agentic("alert", "send", "-", input=json.dumps(queue_stalled("radarr")))
            radarr = next(iter(re.findall(r"inc-[0-9a-z]+", sent.out)), "")
            assert radarr, sent
        yield Configured(stack, first_stack, outside, cluster, ha, arr, cloud, emu, secrets, runbooks, setup, radarr)


def queue_stalled(app: str) -> dict[str, Any]:
    """A stalled download queue alert as an exportarr-based rule labels it (the `app` label names
    the app the project's runbook `arr/download-queue-stalled` acts on)."""
    from tests.acceptance.outside import alert_of, webhook

    name = f"{app.capitalize()}QueueStalled"
    labels = {"alertname": name, "app": app, "namespace": "media", "severity": "warning", "job": f"{app}-exporter"}
    annotations = {
        "summary": f"{app.capitalize()} download queue is stalled",
        "description": f"1 item in the {app.capitalize()} queue has made no progress for 2h.",
    }
    return webhook([alert_of(labels, annotations)], group_by=("alertname", "app"))


# --------------------------------------------------------------------------- the parts table

# The ports of README's example (the defaults) and the variables that move them.
DEFAULT_PORTS = {
    "5433": "AGENTIC_POSTGRES_PORT",
    "7233": "AGENTIC_TEMPORAL_PORT",
    "8233": "AGENTIC_TEMPORAL_UI_PORT",
    "8090": "AGENTIC_LLM_PORT",
    "8092": "AGENTIC_MCP_KNOWLEDGE_PORT",
    "8088": "AGENTIC_INTAKE_PORT",
    "8087": "AGENTIC_GATEWAY_PORT",
}


def parse_parts_table(output: str) -> list[dict[str, str]]:
    """The rows of the table `agentic up` prints (a cell that wraps continues on the next line)."""
    rows: list[dict[str, str]] = []
    for ln in output.splitlines():
        if not ln.startswith("│"):
            continue
        cells = [c.strip() for c in ln.strip().strip("│").split("│")]
        row = dict(zip(("part", "mode", "where", "pid", "role"), cells, strict=False))
        if row.get("part") or not rows:
            rows.append(row)
        else:  # a wrapped line: continue the previous row's cells
            for k, v in row.items():
                if v:
                    rows[-1][k] = f"{rows[-1].get(k, '')} {v}".strip()
    return rows


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def check_parts_table(output: str, env: dict[str, str]) -> None:
    """`all parts healthy in …` and the table of README's example: the same parts, in the same
    order, in the same modes, where README says (on this stack's ports), with a pid for every
    running part and the role README names."""
    first, expected = README.example_table()
    assert re.search(r"^all parts healthy in \d+(\.\d+)?s", output, flags=re.M), (
        f"README: {first!r}; the output has no such line:\n{output[-3000:]}"
    )
    actual = parse_parts_table(output)
    assert [r["part"] for r in actual] == [r["part"] for r in expected], (
        f"README's table lists {[r['part'] for r in expected]}, `agentic up` printed {[r['part'] for r in actual]}"
    )
    problems = []
    for want, got in zip(expected, actual, strict=True):
        where = re.sub(
            r"(?<=:)(\d{4})\b", lambda m: env.get(DEFAULT_PORTS.get(m.group(1), ""), m.group(1)), want["where"]
        )
        if got["mode"] != want["mode"]:
            problems.append(f"{want['part']}: mode {got['mode']!r}, README {want['mode']!r}")
        if got["where"] != where:
            problems.append(f"{want['part']}: where {got['where']!r}, README {where!r}")
        if not _words(want["role"]) <= _words(got["role"]):
            problems.append(f"{want['part']}: role {got['role']!r}, README {want['role']!r}")
        running = want["mode"] == "embedded"
        if running and not (got["pid"].isdigit() and Path(f"/proc/{got['pid']}").exists()):
            problems.append(f"{want['part']}: no running pid ({got['pid']!r})")
        if not running and got["pid"]:
            problems.append(f"{want['part']}: a pid ({got['pid']}) for a part README shows {want['mode']}")
    assert not problems, "README's example table is not what `agentic up` prints:\n  " + "\n  ".join(problems)
