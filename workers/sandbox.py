"""The worker's workflow sandbox, and what it costs per workflow task.

`workflow_runner("strict")` is the SDK's default sandbox: the workflow modules are re-imported
for each run, with `datetime`, `time`, `random` and the like replaced by proxies that refuse
their non-deterministic calls. `workflow_runner("passthrough")` (the worker's default) imports
every module once per worker; the platform's workflow modules keep no mutable module state.
What it still refuses at run time is I/O through the builtins (`open`); a workflow module's
`datetime.now()`, `time.time()` or `random.random()` is *not* refused there, because the module
was imported outside the sandbox (tests/workflows/test_sandbox_runner.py shows both). Those are
kept out by the tests instead: every workflow test runs under the strict sandbox (the SDK's
default runner), as does the replay of every captured history, and
tests/unit/test_workflow_determinism.py refuses such calls in `workflows/` and `agentic_core/`
outright.

In passthrough mode the runner also answers two per-payload questions without entering the
sandbox. temporalio 1.35 asks the workflow instance for the serialization context (and the
external-storage context) of every payload it decodes or encodes: three passes over each
activation and one over each completion, each question a string `exec`'d in the sandbox under
its import restrictions. The answer is a small value built from the run's info and its pending
commands; asking the sandboxed instance for it directly gives the same object (in passthrough
mode `temporalio` is the same module inside and out) at a fraction of the cost: a captured
incident's replay 55 → 32 ms on the reference machine (`tests/workflows/test_sandbox_runner.py` checks
the answers are the same ones). The code strings the sandbox does run (each activation) are
compiled once instead of once per call.

These reach into the SDK's private sandbox instance (`_runner._Instance`); the SDK is pinned
(pyproject.toml). When that class is not what this module expects, the stock runner is used and
the worker logs why once: slower, never wrong.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

log = logging.getLogger("agentic.worker")

SandboxMode = Literal["passthrough", "strict"]

try:  # the SDK's private sandbox instance (pinned SDK; see the module's docstring)
    from temporalio.worker.workflow_sandbox import _runner as _sdk_runner

    _SdkInstance: Any = _sdk_runner._Instance
    _ready = all(
        hasattr(_SdkInstance, name) for name in ("_run_code", "get_serialization_context", "get_external_store_context")
    )
except (ImportError, AttributeError):  # pragma: no cover - another SDK than the pinned one
    _SdkInstance, _ready = None, False

_IN_SANDBOX = "__temporal_in_sandbox"
_compiled: dict[str, Any] = {}
_compiled_lock = threading.Lock()


def _code(source: str) -> Any:
    """`source` compiled once per process (the sandbox `exec`s a handful of fixed strings)."""
    code = _compiled.get(source)
    if code is None:
        with _compiled_lock:
            code = _compiled.setdefault(source, compile(source, "workflow_sandbox.py", "exec"))
    return code


if _ready:

    class _DirectContextInstance(_SdkInstance):  # type: ignore[misc, valid-type]
        """The SDK's sandbox instance; the per-payload context questions go straight to the
        instance inside it, and the code it runs is compiled once."""

        def _run_code(self, code: str, **extra_globals: Any) -> None:
            super()._run_code(_code(code), **extra_globals)  # type: ignore[arg-type]

        def _inner(self) -> Any:
            return self.globals_and_locals.get(_IN_SANDBOX)

        def get_serialization_context(self, command_info: Any) -> Any:
            inner = self._inner()
            if inner is None:  # not created yet: as the SDK does it
                return super().get_serialization_context(command_info)
            return inner.get_serialization_context(command_info)

        def get_external_store_context(self, command_info: Any) -> Any:
            inner = self._inner()
            if inner is None:
                return super().get_external_store_context(command_info)
            return inner.get_external_store_context(command_info)


class PassthroughRunner(SandboxedWorkflowRunner):
    """The sandbox with every module passed through, and the in-place context answers above."""

    def create_instance(self, det: Any) -> Any:
        if not _ready:
            return super().create_instance(det)
        return _DirectContextInstance(det, self.runner_class, self.restrictions)


_warned = False


def workflow_runner(mode: SandboxMode | str) -> SandboxedWorkflowRunner:
    """The sandbox for `mode` (`Settings.workflow_sandbox`). Replay tests use the strict one."""
    global _warned
    if mode != "passthrough":
        # sniffio (which async library runs: asked by httpx and anyio) may be imported for the
        # first time while a workflow runs, and the SDK warns about a module imported after the
        # workflow's load; it holds no state a workflow could depend on, so it comes from outside.
        return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("sniffio"))
    restrictions = SandboxRestrictions.default.with_passthrough_all_modules()
    if not _ready and not _warned:
        _warned = True
        log.warning("temporalio's sandbox is not the one this worker knows: the stock passthrough runner is used")
    return PassthroughRunner(restrictions=restrictions)
