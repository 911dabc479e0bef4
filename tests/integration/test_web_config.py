"""What configures the web agent: its server's settings, the `mcp-web` part of `agentic up` (off,
saying what to set, until AGENTIC_SEARXNG_URL or AGENTIC_WEB_ALLOWED_DOMAINS is set; `agentic status`
in a subprocess shows it), the worker's server list and agents, and the answer of a request to the
web agent when it is off (it names the settings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentic_core.agents import no_tools_note, not_configured_answer
from agentic_core.tools import configure_hints
from tests.support.env import REPO
from workers.settings import Settings
from workers.stack.env import effective_settings
from workers.stack.parts import build_parts


def settings(tmp: Path, **over: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp, **over)  # type: ignore[call-arg, arg-type]


def test_off_until_search_or_sites_are_set(tmp_path: Path) -> None:
    s = settings(tmp_path)
    part = next(p for p in build_parts(s, effective_settings(s), resolve_binaries=False) if p.name == "mcp-web")
    assert part.mode == "disabled"
    assert "web" not in s.mcp_servers and "web" not in s.agent_limit_map  # the agent is off
    assert s.agent_tool_lists["web"] == ["web_search", "web_fetch"]  # its list is ready for its server

    on = settings(tmp_path, searxng_url="http://searxng:8080", web_allowed_domains="docs.python.org,*.github.com")
    part = next(p for p in build_parts(on, effective_settings(on), resolve_binaries=False) if p.name == "mcp-web")
    assert (part.mode, part.port) == ("embedded", 8097)
    assert part.argv[1:4] == ["-P", "-m", "workers.toolservers.web"]
    assert part.role == "MCP web tools (search http://searxng:8080; fetch docs.python.org,*.github.com)"
    assert on.mcp_servers["web"] == "http://127.0.0.1:8097/mcp" and "web" in on.agent_limit_map

    ext = settings(tmp_path, mcp_web_url="http://mcp-web.ai-tools:8097/mcp")
    part = next(p for p in build_parts(ext, effective_settings(ext), resolve_binaries=False) if p.name == "mcp-web")
    assert (part.mode, part.url) == ("external", "http://mcp-web.ai-tools:8097/mcp")
    assert ext.mcp_servers["web"] == "http://mcp-web.ai-tools:8097/mcp" and "web" in ext.agent_limit_map


def test_agentic_status_says_what_turns_it_on(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env |= {"AGENTIC_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "workers.cli", "status", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    web = next(p for p in json.loads(out.stdout)["parts"] if p["name"] == "mcp-web")
    assert web["mode"] == "disabled"
    assert web["detail"] == "no web search or sites: set AGENTIC_SEARXNG_URL and/or AGENTIC_WEB_ALLOWED_DOMAINS"


def test_the_not_configured_answer_names_the_settings() -> None:
    answer = not_configured_answer("web")
    for setting in ("AGENTIC_SEARXNG_URL", "AGENTIC_WEB_ALLOWED_DOMAINS", "AGENTIC_WEB_TOOLS"):
        assert setting in answer
    assert "AGENTIC_SEARXNG_URL" in no_tools_note("web")
    # the incident agent does not browse: its "nothing can run" hints do not send anyone to SearXNG
    assert not any("SEARXNG" in h for h in configure_hints())


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"web_allowed_domains": "docs.python.org,*.com"}, "com is a public suffix"),
        ({"web_allowed_domains": "https://example.org/x"}, "not URLs"),
        ({"web_allowed_networks": "10.0.0.0/33"}, "is not a network"),
        ({"mcp_web_port": 0}, "port 0 is outside"),
    ],
)
def test_bad_web_settings_say_what_is_wrong(tmp_path: Path, over: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(tmp_path, **over)
