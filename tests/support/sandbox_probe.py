"""A workflow that calls what a workflow must not (tests/workflows/test_sandbox_runner.py): it
lives alone so the strict sandbox can re-import it."""

from __future__ import annotations

import random
import time
from datetime import datetime

from temporalio import workflow


@workflow.defn(name="SandboxProbe")
class SandboxProbe:
    @workflow.run
    async def run(self, call: str) -> str:
        if call == "datetime.now":
            return datetime.now().isoformat()
        if call == "random.random":
            return str(random.random())
        if call == "time.time":
            return str(time.time())
        if call == "open":
            with open("/dev/null") as f:  # noqa: ASYNC230 - the call the sandbox must refuse
                return f.read()
        return workflow.now().isoformat()
