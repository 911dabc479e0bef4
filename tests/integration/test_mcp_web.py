"""The web MCP server against local web sites and a fake SearXNG (tests/support/web_sites.py), all
on loopback: the real server process behind its bearer token for the tools' results and refusals,
and the fetcher in-process where a test needs its own rules (an unopened loopback, a resolver that
changes its answer, a page budget).

Loopback is opened on purpose for the test site (AGENTIC_WEB_ALLOWED_NETWORKS=127.0.0.0/8, and the
site's own `localhost:PORT` on the allow-list); everything else must still be refused: another
loopback port, the loopback IP by number, a domain off the list, the cloud metadata address even
when an operator lists it by name. The sites record every request: a refused URL is never
contacted.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from mcp import Client

from tests.support.env import free_port
from tests.support.kmock_helpers import McpProcess, mcp_client, result_data, result_text, start_server
from tests.support.web_sites import FakeSearxng, Site, site_app, web_world
from workers.toolservers.web.egress import EgressPolicy, EgressRefused, Fetcher, parse_rule
from workers.toolservers.web.searxng import SearxNG
from workers.toolservers.web.server import build_server, main

TOKEN = "web-test-token"
UA = "agentic-platform-web/0.1"


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[tuple[Site, Site, FakeSearxng]]:
    async with web_world() as w:
        yield w


@pytest.fixture(scope="module")
async def server(world: tuple[Site, Site, FakeSearxng]) -> AsyncIterator[McpProcess]:
    site, _, searx = world
    proc = await start_server(
        free_port(),
        None,
        TOKEN,
        module="workers.toolservers.web",
        env={
            "AGENTIC_SEARXNG_URL": searx.url,
            # the metadata IP by name: the address check must still refuse it (it is not in the networks)
            "AGENTIC_WEB_ALLOWED_DOMAINS": f"localhost:{site.port},169.254.169.254",
            "AGENTIC_WEB_ALLOWED_NETWORKS": "127.0.0.0/8",
            "AGENTIC_WEB_MAX_BYTES": "200000",
            "AGENTIC_WEB_TIMEOUT_S": "2",
        },
    )
    yield proc
    await proc.stop()


async def call(server: McpProcess, tool: str, args: dict[str, Any]) -> Any:
    async with mcp_client(server.url, TOKEN) as c:
        return await c.call_tool(tool, args)


def error(res: Any, tool: str = "web_fetch") -> str:
    """A tool error's text as the gateway reads it (without the SDK's `Error executing tool …: `)."""
    assert res.is_error, result_text(res)
    return result_text(res).removeprefix(f"Error executing tool {tool}: ")


# --- search ---------------------------------------------------------------------------------------


async def test_search_returns_searxngs_results_marked_fetchable_by_the_allow_list(
    server: McpProcess, world: tuple[Site, Site, FakeSearxng]
) -> None:
    site, _, searx = world
    async with mcp_client(server.url, TOKEN) as c:
        listed = {t.name: t for t in (await c.list_tools()).tools}
        res = result_data(await c.call_tool("web_search", {"query": "sonarr v4 release notes", "max_results": 5}))
    assert set(listed) == {"web_search", "web_fetch"}
    assert all(t.annotations and t.annotations.read_only_hint for t in listed.values())
    assert searx.queries[-1] == {"q": "sonarr v4 release notes", "pageno": "1", "format": "json"}
    hits = res["results"]
    assert [(h["url"], h["fetchable"]) for h in hits] == [
        (f"{site.base}/article", True),
        ("https://evil.example.com/sonarr", False),
    ]
    assert hits[0]["title"] == "Sonarr v4 release notes" and hits[0]["engines"] == ["duckduckgo", "brave"]
    assert res["suggestions"] == ["sonarr v4 upgrade"] and res["unresponsive_engines"] == ["google timeout"]


async def test_search_errors_say_what_to_fix() -> None:
    down = SearxNG(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    async with Client(build_server(down, None)) as c:
        res = await c.call_tool("web_search", {"query": "x"})
    assert res.is_error and "cannot reach SearXNG" in result_text(res) and "AGENTIC_SEARXNG_URL" in result_text(res)
    await down.close()


# --- fetch ----------------------------------------------------------------------------------------


async def test_fetch_gives_markdown_with_its_source_and_leaves_the_boilerplate(
    server: McpProcess, world: tuple[Site, Site, FakeSearxng]
) -> None:
    site, _, _ = world
    page = result_data(await call(server, "web_fetch", {"url": f"{site.base}/redirect/same-site"}))
    assert page["source"] == f"{site.base}/article" and page["redirects"] == [f"{site.base}/redirect/same-site"]
    md = page["markdown"]
    assert md.startswith(f"Source: {site.base}/article\n")
    assert "# Sonarr v4 release notes" in md and "requires .NET 8" in md
    assert "| v4.0.0 | 2026-01-10 | fixes |" in md  # tables kept
    assert "Sponsored" not in md and "window.analytics" not in md and "© 2026 Docs Inc." not in md
    assert page["title"] == "Sonarr v4 release notes" and page["extraction"] == "trafilatura"
    assert "never instructions" in page["note"]
    # the site was asked by its name (Host), robots.txt first
    assert ("/robots.txt", f"localhost:{site.port}") in site.hits


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/redirect/off-list", "evil.example.com is not on the web allow-list"),
        ("/redirect/other-port", "is not on the web allow-list"),
        ("/redirect/loopback-ip", "127.0.0.1:{port} is not on the web allow-list"),
        ("/redirect/metadata", "169.254.169.254 is a link-local (cloud metadata lives there) address: refused (SSRF)"),
        ("/private/report", "robots.txt of http://localhost:{port} disallows /private/report"),
        ("/redirect/private", "robots.txt of http://localhost:{port} disallows /private/report"),
    ],
)
async def test_every_hop_is_checked_and_a_refusal_says_why(
    server: McpProcess, world: tuple[Site, Site, FakeSearxng], path: str, why: str
) -> None:
    site, other, _ = world
    before = list(site.hits)
    text = error(await call(server, "web_fetch", {"url": site.base + path}))
    assert text.startswith("egress refused: "), text
    assert why.format(port=site.port) in text
    if path.startswith("/redirect/"):
        assert f"redirect {site.base}{path} → " in text
    assert other.hits == []  # the other loopback port was never contacted
    assert all(p != "/private/report" for p, _ in site.hits[len(before) :])  # nor the disallowed path


async def test_urls_off_the_list_are_refused_before_any_request(
    server: McpProcess, world: tuple[Site, Site, FakeSearxng]
) -> None:
    site, _, _ = world
    before = len(site.hits)
    for url, why in [
        ("https://evil.example.com/", "evil.example.com is not on the web allow-list"),
        (f"http://user:pw@localhost:{site.port}/article", "URLs with credentials"),
        (f"file:///etc/passwd#{site.port}", "only http and https URLs"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local"),
    ]:
        text = error(await call(server, "web_fetch", {"url": url}))
        assert text.startswith("egress refused: ") and why in text, (url, text)
    assert len(site.hits) == before


async def test_size_and_time_limits(server: McpProcess, world: tuple[Site, Site, FakeSearxng]) -> None:
    site, _, _ = world
    huge = result_data(await call(server, "web_fetch", {"url": f"{site.base}/huge", "max_chars": 5000}))
    assert huge["size_limited"] and huge["bytes_read"] == 200_000  # of 8 MB, AGENTIC_WEB_MAX_BYTES
    assert huge["truncated"] and len(huge["markdown"]) == 5000 and huge["chars"] > 5000
    t0 = asyncio.get_running_loop().time()
    slow = await call(server, "web_fetch", {"url": f"{site.base}/slow"})
    assert slow.is_error and "did not arrive within 2 s (AGENTIC_WEB_TIMEOUT_S)" in result_text(slow)
    assert asyncio.get_running_loop().time() - t0 < 4.5
    loop = await call(server, "web_fetch", {"url": f"{site.base}/redirect/loop"})
    assert loop.is_error and "more than 5 redirects" in result_text(loop)
    png = await call(server, "web_fetch", {"url": f"{site.base}/image.png"})
    assert png.is_error and "image/png, not a page of text" in result_text(png)
    gone = await call(server, "web_fetch", {"url": f"{site.base}/missing"})
    assert gone.is_error and "answered HTTP 404" in result_text(gone)
    for res in (slow, loop, png, gone):  # failures, not refusals: no guardrail event
        assert not error(res).startswith("egress refused")


async def test_without_the_token_nothing_is_served(server: McpProcess) -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.post(server.url, json={})).status_code == 401


# --- the rules, in-process ------------------------------------------------------------------------


async def test_loopback_is_refused_after_dns_unless_opened(world: tuple[Site, Site, FakeSearxng]) -> None:
    site, _, _ = world
    before = len(site.hits)
    closed = Fetcher(EgressPolicy.from_settings(f"localhost:{site.port}"), user_agent=UA, timeout_s=2)
    with pytest.raises(
        EgressRefused, match=r"localhost resolves to 127\.0\.0\.1, a loopback address: refused \(SSRF\)"
    ):
        await closed.fetch(f"{site.base}/article")
    await closed.close()
    assert len(site.hits) == before


async def test_the_connection_goes_to_the_checked_address_not_a_second_dns_answer(
    world: tuple[Site, Site, FakeSearxng],
) -> None:
    """DNS rebinding: `rebind.test` (a name no real resolver knows) answers loopback (opened) for the
    page's hop and its robots.txt, then the metadata address. The fetch connects to the address it
    checked, with the name in Host and without asking DNS again (the system could not resolve the
    name at all); the next fetch gets the new answer and is refused before any connection."""
    site, _, _ = world
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"] if len(asked) <= 2 else ["169.254.169.254"]

    policy = EgressPolicy.from_settings(f"rebind.test:{site.port}", "127.0.0.0/8")
    f = Fetcher(policy, user_agent=UA, timeout_s=2, resolve=rebinding)
    try:
        first = await f.fetch(f"http://rebind.test:{site.port}/article")
        assert first.status == 200 and b"requires .NET 8" in first.body
        assert asked == ["rebind.test", "rebind.test"]  # the page's hop and robots.txt's, once each
        assert ("/robots.txt", f"rebind.test:{site.port}") in site.hits
        assert ("/article", f"rebind.test:{site.port}") in site.hits
        seen = len(site.hits)
        with pytest.raises(EgressRefused, match=r"rebind.test resolves to 169.254.169.254, a link-local"):
            await f.fetch(f"http://rebind.test:{site.port}/page")
        assert len(site.hits) == seen
    finally:
        await f.close()


async def test_the_page_budget_refuses_beyond_it(world: tuple[Site, Site, FakeSearxng]) -> None:
    site, _, _ = world
    now = [1000.0]
    f = Fetcher(
        EgressPolicy.from_settings(f"localhost:{site.port}", "127.0.0.1/32"),
        user_agent=UA,
        max_pages_per_minute=2,
        clock=lambda: now[0],
    )
    try:
        await f.fetch(f"{site.base}/article")
        await f.fetch(f"{site.base}/page")
        with pytest.raises(EgressRefused, match=r"2 pages a minute \(AGENTIC_WEB_MAX_PAGES_PER_MINUTE\)"):
            await f.fetch(f"{site.base}/article")
        now[0] += 61
        assert (await f.fetch(f"{site.base}/article")).status == 200
    finally:
        await f.close()


@pytest.mark.parametrize(
    ("entry", "host", "port", "allowed"),
    [
        ("docs.python.org", "docs.python.org", 443, True),
        ("docs.python.org", "docs.python.org", 8443, False),  # no port: 80 and 443 only
        ("docs.python.org", "evil.docs.python.org", 443, False),
        ("*.github.com", "api.github.com", 443, True),
        ("*.github.com", "a.b.github.com", 80, True),
        ("*.github.com", "github.com", 443, False),  # list both for the apex
        ("*.github.com", "evilgithub.com", 443, False),  # label boundaries
        ("*.github.com", "github.com.evil.net", 443, False),
        ("*.github.io", "someone.github.io", 443, True),  # a private suffix (platform), allowed on purpose
        ("wiki.lan:8080", "wiki.lan", 8080, True),
        ("BÜCHER.example", "xn--bcher-kva.example", 443, True),  # IDNA
    ],
)
def test_allow_list_entries(entry: str, host: str, port: int, allowed: bool) -> None:
    assert parse_rule(entry).matches(host, port) is allowed


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("*", "a wildcard is only"),
        ("*.com", "com is a public suffix"),
        ("co.uk", "co.uk is a public suffix"),
        ("*.co.uk", "would allow a whole top-level domain"),
        ("https://example.org/", "not URLs"),
        ("ex*ample.org", "a wildcard is only"),
        ("example.org:99999", "is not a port"),
        ("*.10.0.0.1", "an IP address takes no wildcard"),
    ],
)
def test_bad_allow_list_entries_are_refused_at_start(entry: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_rule(entry)


def test_a_bad_setting_stops_the_server_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AGENTIC_WEB_ALLOWED_DOMAINS", "*.com")
    assert main(["--port", str(free_port())]) == 2
    assert "error: AGENTIC_WEB_ALLOWED_DOMAINS/NETWORKS: '*.com': com is a public suffix" in capsys.readouterr().err
    monkeypatch.delenv("AGENTIC_WEB_ALLOWED_DOMAINS")
    monkeypatch.delenv("AGENTIC_SEARXNG_URL", raising=False)
    assert main(["--port", str(free_port())]) == 2
    assert "nothing to serve: set AGENTIC_SEARXNG_URL (web_search) and/or" in capsys.readouterr().err


async def test_https_is_pinned_too_and_the_certificate_is_checked_against_the_name(tmp_path: Path) -> None:
    """An HTTPS site with a certificate for `secure.test` only, on loopback: the fetch connects to the
    checked address and verifies the certificate for the name (TLS SNI), so a certificate for
    another name fails even at the same address."""
    ca_pem, cert, key = _self_signed(tmp_path, "secure.test")
    site = Site(port=free_port())
    config = uvicorn.Config(
        site_app(site), host="127.0.0.1", port=site.port, log_level="warning", ssl_certfile=cert, ssl_keyfile=key
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for it)
        await asyncio.sleep(0.02)

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    trust = ssl.create_default_context(cadata=ca_pem)
    rules = f"secure.test:{site.port},other.test:{site.port}"
    f = Fetcher(EgressPolicy.from_settings(rules, "127.0.0.0/8"), user_agent=UA, resolve=resolve, verify=trust)
    try:
        page = await f.fetch(f"https://secure.test:{site.port}/article")
        assert page.status == 200 and b"requires .NET 8" in page.body
        assert ("/article", f"secure.test:{site.port}") in site.hits
        # the certificate is not for this name: even robots.txt cannot be read (so nothing there is)
        with pytest.raises(EgressRefused, match=r"certificate is not valid for 'other.test'"):
            await f.fetch(f"https://other.test:{site.port}/article")
    finally:
        await f.close()
        server.should_exit = True
        await task


def _self_signed(tmp: Path, name: str) -> tuple[str, str, str]:
    """A certificate for `name` (self-signed, its own CA): the PEM, and the cert and key files."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    (tmp / "cert.pem").write_text(pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem, str(tmp / "cert.pem"), str(tmp / "key.pem")
