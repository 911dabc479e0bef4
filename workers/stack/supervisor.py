"""The supervisor: `agentic up` starts the parts phase by phase (`PHASES`: the services, the
ledger's migrations and Temporal's search attributes, the worker, the edges), waits for each one's
health, ingests docs/ on first start, then watches every embedded part: one that dies is started
again (`RestartPolicy`), and one that stays down is reported to the operator (`PartAlerts`).
Ctrl-C, SIGTERM or `agentic down` stops the parts in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workers.errors import AgenticError
from workers.settings import Settings
from workers.stack.alerts import PartAlerts
from workers.stack.env import (
    PORT_SETTINGS,
    EmbeddedSecrets,
    effective_settings,
)
from workers.stack.parts import PHASES, Part, build_parts, log_tail
from workers.stack.postgres import init_postgres
from workers.stack.restarts import RestartPolicy
from workers.stack.state import StackState, read_state, state_path, write_state

# --------------------------------------------------------------------------- helpers


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def docs_dir(settings: Settings) -> Path | None:
    if settings.docs_dir is not None:
        return settings.docs_dir.expanduser()
    repo_docs = Path(__file__).resolve().parents[2] / "docs"
    return repo_docs if repo_docs.is_dir() else None


# --------------------------------------------------------------------------- preflight


def check_data_dir(data: Path) -> None:
    if data.exists() and not data.is_dir():
        raise AgenticError(f"data dir {data} is a file, not a directory: choose another --data-dir")
    data.mkdir(parents=True, exist_ok=True)
    pg = data / "postgres"
    if pg.exists() and any(pg.iterdir()) and not (pg / "PG_VERSION").exists():
        raise AgenticError(
            f"{pg} exists but is not a PostgreSQL data directory (no PG_VERSION): "
            "the data dir looks corrupt; move it away to start fresh, or restore it from a backup"
        )
    tdb = data / "temporal" / "temporal.db"
    if tdb.exists() and tdb.stat().st_size > 0:
        with tdb.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise AgenticError(
                    f"{tdb} is not a SQLite database: the data dir looks corrupt; "
                    "move the file away to start Temporal fresh (open incidents are then lost)"
                )


def preflight(parts: list[Part], settings: Settings) -> None:
    env_names = {name: f"AGENTIC_{field_name.upper()}" for name, field_name in PORT_SETTINGS.items()}
    ports = [(p.name, p.port, env_names.get(p.name, "")) for p in parts if p.mode == "embedded" and p.port]
    if settings.temporal_embedded:
        ports.append(("temporal web ui", settings.temporal_ui_port, "AGENTIC_TEMPORAL_UI_PORT"))
    for name, port, env_name in ports:
        assert port is not None
        if port_in_use(settings.host, port):
            raise AgenticError(
                f"port {port} on {settings.host} is already in use (needed by {name}): "
                f"stop what holds it, or set {env_name} to a free port"
            )


# --------------------------------------------------------------------------- the supervisor


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        out: Callable[[str], None] = print,
        policy: RestartPolicy | None = None,
        alert_retry_s: float = 2.0,
    ) -> None:
        self.settings = settings
        self.data = settings.data_path
        self.out = out
        self.policy = policy or RestartPolicy.from_settings(settings)
        self.alert_retry_s = alert_retry_s
        self.alerts: PartAlerts | None = None
        self.parts: list[Part] = []
        self.stopping = asyncio.Event()
        self._lock_fd: int | None = None
        self.started_at = datetime.now(UTC)
        self.eff: Settings | None = None

    # -- lock -----------------------------------------------------------------------
    def acquire_lock(self) -> None:
        fd = os.open(self.data / "stack.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            st = None
            with contextlib.suppress(AgenticError):
                st = read_state(self.data)
            pid = f" (supervisor pid {st.supervisor_pid})" if st else ""
            raise AgenticError(
                f"a stack is already running on {self.data}{pid}: see `agentic status`, stop it with `agentic down`"
            ) from None
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    # -- state -----------------------------------------------------------------------
    def snapshot(self, ready: bool, error: str | None = None) -> StackState:
        s = self.settings
        return StackState(
            supervisor_pid=os.getpid(),
            ready=ready,
            error=error,
            started_at=self.started_at,
            data_dir=str(self.data),
            host=s.host,
            temporal_target=s.temporal_target,
            temporal_namespace=s.temporal_namespace,
            task_queue=s.task_queue,
            ui_url=f"http://{s.host}:{s.temporal_ui_port}" if s.temporal_embedded else None,
            parts={p.name: p.state() for p in self.parts},
        )

    def save(self, ready: bool, error: str | None = None) -> None:
        write_state(self.data, self.snapshot(ready, error))

    # -- processes -------------------------------------------------------------------
    async def spawn(self, part: Part) -> None:
        assert part.log is not None
        part.log.parent.mkdir(parents=True, exist_ok=True)
        if part.log_file is None:
            part.log_file = part.log.open("ab")
        part.log_file.write(f"\n--- {datetime.now(UTC).isoformat()} starting {part.name}\n".encode())
        part.log_file.flush()
        kwargs: dict[str, Any] = {}
        if part.user:
            import pwd

            ent = pwd.getpwnam(part.user)
            kwargs.update(user=ent.pw_uid, group=ent.pw_gid, extra_groups=[])
        part.proc = await asyncio.create_subprocess_exec(
            *part.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=part.log_file,
            stderr=asyncio.subprocess.STDOUT,
            env=part.env,
            cwd=str(self.data),
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops parts in order
            **kwargs,
        )

    async def wait_healthy(self, part: Part) -> str:
        assert part.health is not None
        deadline = time.monotonic() + part.start_timeout
        detail = "starting"
        while time.monotonic() < deadline:
            if part.proc is not None and part.proc.returncode is not None:
                tail = log_tail(part.log, 2)
                raise AgenticError(
                    f"{part.name} exited during start-up (code {part.proc.returncode}): {tail or 'no output'}"
                    f" — full log: {part.log}"
                )
            ok, detail = await part.health()
            if ok:
                return detail
            await asyncio.sleep(0.25)
        raise AgenticError(
            f"{part.name} did not become healthy within {part.start_timeout:.0f}s ({detail}); log: {part.log}"
        )

    async def stop_part(self, part: Part, grace: float = 20.0) -> None:
        proc = part.proc
        if proc is None or proc.returncode is not None:
            return
        # PostgreSQL: SIGINT is "fast shutdown" (SIGTERM waits for every client to leave).
        sig = signal.SIGINT if part.name == "postgres" else signal.SIGTERM
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            self.out(f"{part.name} did not stop within {grace:.0f}s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        check_data_dir(self.data)
        self.acquire_lock()
        try:
            eff = effective_settings(s)
            self.eff = eff
            self.parts = build_parts(s, eff)
            preflight(self.parts, s)
            if s.postgres_embedded:
                init_postgres(s, EmbeddedSecrets(self.data).postgres_password())
            (self.data / "temporal").mkdir(exist_ok=True)
            self.save(ready=False)

            # Phase by phase (PHASES): every embedded part is started, every embedded or external
            # part must be healthy before the next phase. The services first, then the ledger's
            # migrations; the worker; then the edges, so alerts and presses are accepted once a
            # worker polls.
            for phase in PHASES:
                group = [p for p in self.parts if p.phase == phase and p.mode in ("embedded", "external")]
                for p in group:
                    if p.mode == "embedded":
                        await self.spawn(p)
                self.save(ready=False)
                await asyncio.gather(*(self._announce(p) for p in group))
                if phase == "service":
                    await self.prepare_services(eff)
            await self.ingest_docs(eff)
            self.save(ready=True)
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, AgenticError):
                with contextlib.suppress(OSError):
                    self.save(ready=False, error=str(exc))
            raise
        finally:
            if not any(p.proc and p.proc.returncode is None for p in self.parts):
                self.release_lock()

    async def _announce(self, part: Part) -> None:
        t0 = time.monotonic()
        detail = await self.wait_healthy(part)
        part.healthy_since = time.monotonic()
        self.out(f"  ✓ {part.name:<9} {detail} ({time.monotonic() - t0:.1f}s)")

    async def prepare_services(self, eff: Settings) -> None:
        """Ledger migrations and Temporal search attributes, before the worker starts."""
        from activities.ledger.db import MigrationError, create_pool, migrate
        from workers.temporal import connect, ensure_search_attributes

        pool = await create_pool(eff.postgres_target(), min_size=1, max_size=2)
        try:
            applied = await migrate(pool)
        except MigrationError as exc:  # e.g. a ledger a newer agentic migrated: one clear line
            raise AgenticError(str(exc)) from None
        finally:
            await pool.close()
        if applied:
            self.out(f"  ✓ ledger    migrations applied: {', '.join(applied)}")
        client = await connect(eff.temporal_target, eff.temporal_namespace)
        added = await ensure_search_attributes(client, eff.temporal_namespace)
        if added:
            self.out(f"  ✓ temporal  search attributes registered: {', '.join(added)}")

    async def ingest_docs(self, eff: Settings) -> None:
        """First start: put docs/ into the knowledge base (once per content; a durable workflow)."""
        src = docs_dir(eff)
        if src is None:
            return
        from workers.knowledge_client import start_docs_ingest

        wf_id = await start_docs_ingest(eff, src)
        if wf_id:
            self.out(f"  ✓ docs      ingesting {src} into the knowledge base (workflow {wf_id})")

    async def stop(self) -> None:
        for p in reversed(self.parts):
            if p.mode == "embedded":
                await self.stop_part(p)
        for p in self.parts:
            if p.log_file is not None:
                p.log_file.close()
                p.log_file = None

    async def supervise(self) -> None:
        """Watch every embedded part until asked to stop: restart one that dies (`RestartPolicy`,
        for as long as the stack runs), and tell the operator about one that stays down (`PartAlerts`)."""
        self.alerts = PartAlerts(self.eff or self.settings, self.out, retry_s=self.alert_retry_s)
        tasks = [asyncio.create_task(self.alerts.run(), name="part-alerts")]
        tasks += [
            asyncio.create_task(self._watch(p), name=f"watch-{p.name}")
            for p in self.parts
            if p.mode == "embedded" and p.proc is not None
        ]
        try:
            await self.stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, p: Part) -> None:
        while True:
            try:
                assert p.proc is not None
                code = await p.proc.wait()
                await self._bring_back(p, code)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug here must not leave the part unsupervised
                self.out(f"! supervising {p.name} failed ({type(exc).__name__}: {exc}); watching it again")
                await asyncio.sleep(self.policy.backoff_min_s)

    async def _bring_back(self, p: Part, code: int | None) -> None:
        """`p` exited with `code`: start it again, with back-off, until it is healthy."""
        assert self.alerts is not None
        policy = self.policy
        while True:
            healthy_for = time.monotonic() - p.healthy_since if p.healthy_since is not None else None
            p.crash_streak = policy.streak_after_crash(p.crash_streak, healthy_for)
            p.failed_starts += 1
            p.healthy_since = None
            p.last_exit = code
            p.restarts += 1
            delay = policy.delay(p.crash_streak)
            p.next_start_at = datetime.now(UTC) + timedelta(seconds=delay)
            ran = f"after {healthy_for:.0f}s healthy" if healthy_for is not None else "before it was healthy"
            self.out(
                f"! {p.name} exited (code {code}) {ran}: restart {p.restarts} in {delay:.1f}s"
                f" (crash {p.crash_streak} in a row) — {log_tail(p.log)}"
            )
            if p.down_since is None and policy.is_down(p.crash_streak, p.failed_starts):
                p.down_since = datetime.now(UTC)
                self.out(
                    f"! {p.name} is down: {p.crash_streak} crashes in a row, {p.failed_starts} since it was last"
                    " healthy; telling the operator"
                )
                self.alerts.part_down(p, policy)
            self.save(ready=True)
            await asyncio.sleep(delay)
            p.next_start_at = None
            try:
                await self.spawn(p)
            except OSError as exc:
                self.out(f"! cannot start {p.name}: {exc}")
                code = None
                continue
            self.save(ready=True)
            try:
                await self.wait_healthy(p)
            except AgenticError as exc:
                self.out(f"! {exc}")
                await self.stop_part(p)  # not healthy in time: stop it; it counts as a crash
                code = p.proc.returncode if p.proc is not None else None
                continue
            p.healthy_since = time.monotonic()
            p.failed_starts = 0
            self.out(f"  ✓ {p.name} is back (restart {p.restarts})")
            if p.down_since is not None:
                self.alerts.part_back(p, datetime.now(UTC) - p.down_since)
                p.down_since = None
            self.save(ready=True)
            return

    async def run(self, on_ready: Callable[[StackState], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.start()
        if on_ready:
            on_ready(self.snapshot(ready=True))
        try:
            await self.supervise()
        finally:
            self.out("stopping…")
            await self.stop()
            with contextlib.suppress(OSError):
                state_path(self.data).unlink()
            self.release_lock()
            self.out("stopped.")
