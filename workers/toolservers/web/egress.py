"""What the web tools may reach, and the one HTTP client that reaches it.

The egress rules (`EgressPolicy`), checked on every URL the tools fetch, again after DNS
resolution, and again on every redirect hop:

- the scheme is http or https, the URL carries no credentials;
- the host is on the domain allow-list (AGENTIC_WEB_ALLOWED_DOMAINS): `example.org` is that
  host, `*.example.org` every name under it (not example.org itself: list both), an entry with
  a port (`example.org:8443`) that port only, an entry without one ports 80 and 443 only. Names
  are compared lower-case, IDNA-encoded, on label boundaries. Public-suffix aware: an entry that
  is an ICANN public suffix or a wildcard over one (`com`, `*.co.uk`, `*`) is refused when the
  server starts, since it would allow the whole web (`publicsuffixlist`, its bundled list; no
  network);
- every address the host resolves to is public (`is_global`, not multicast or reserved), unless
  it lies in AGENTIC_WEB_ALLOWED_NETWORKS (CIDRs an operator opens on purpose, e.g. a homelab's
  wiki): loopback, private, link-local (the cloud metadata address 169.254.169.254), carrier-grade
  NAT and the rest are refused (SSRF). The connection is then made to the checked address (the
  URL's host replaced by it, `Host` and TLS SNI kept), so a second DNS answer cannot send it
  elsewhere (DNS rebinding); no proxy from the environment is used;
- robots.txt of the origin allows the path for the platform's user agent (fetched through the
  same checks, cached; RFC 9309: a 4xx robots.txt allows everything, a 5xx or an unreachable one
  allows nothing);
- at most `max_pages_per_minute` pages in any minute.

A refusal raises `EgressRefused` (its text begins with `agentic_core.tools.EGRESS_REFUSED`, which
the tool gateway records as an `egress_refused` guardrail event). Size and time are limits, not
refusals: a page is read up to `max_bytes` (the rest is left unread and the result says so), the
whole fetch (redirects and robots.txt included) gets `timeout_s`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
import urllib.robotparser
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

import httpx
from publicsuffixlist import PublicSuffixList

from agentic_core.tools import EGRESS_REFUSED

REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = (80, 443)
ROBOTS_TTL_S = 600.0
ROBOTS_MAX_BYTES = 512_000
ROBOTS_MAX_HOPS = 5

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]


class EgressRefused(Exception):
    """A URL the web tools may not reach; the text says why and what setting would change it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{EGRESS_REFUSED}: {reason}")
        self.reason = reason


class FetchFailed(Exception):
    """A fetch that was allowed but did not work (timeout, connection, HTTP error, too many hops)."""


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList(only_icann=True)


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, IDNA (punycode) for non-ASCII names; IP literals unbracketed."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{host!r} is not a valid host name ({exc})") from None


@dataclass(frozen=True)
class HostRule:
    """One allow-list entry: a host (`wildcard`: the names under it) and a port (None: 80, 443)."""

    domain: str
    wildcard: bool = False
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        if (port not in DEFAULT_PORTS) if self.port is None else (port != self.port):
            return False
        if self.wildcard:
            return host.endswith("." + self.domain)
        return host == self.domain

    def __str__(self) -> str:
        name = ("*." if self.wildcard else "") + (f"[{self.domain}]" if ":" in self.domain else self.domain)
        return name + (f":{self.port}" if self.port is not None else "")


def parse_rule(entry: str) -> HostRule:
    """One AGENTIC_WEB_ALLOWED_DOMAINS entry; a ValueError says what is wrong with it."""
    raw = entry.strip()
    if "://" in raw or "/" in raw or "@" in raw:
        raise ValueError(f"{raw!r}: list host names (example.org, *.example.org, example.org:8443), not URLs")
    host, port = raw, None
    if raw.startswith("["):  # [v6]:port
        close = raw.find("]")
        host, rest = raw[1:close], raw[close + 1 :]
        if rest:
            port = _port(raw, rest.removeprefix(":"))
    elif raw.count(":") == 1:
        host, _, p = raw.partition(":")
        port = _port(raw, p)
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if not host or "*" in host:
        raise ValueError(f"{raw!r}: a wildcard is only `*.` before a domain (e.g. *.github.com)")
    host = normalise_host(host)
    if _is_ip(host):
        if wildcard:
            raise ValueError(f"{raw!r}: an IP address takes no wildcard")
        return HostRule(host, False, port)
    if _psl().is_public(host, accept_unknown=False):
        what = f"*.{host}" if wildcard else host
        raise ValueError(
            f"{raw!r}: {host} is a public suffix, so {what} would allow a whole top-level domain; "
            f"list the sites you mean (e.g. docs.{host})"
        )
    return HostRule(host, wildcard, port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: {text!r} is not a port (1..65535)")
    return int(text)


def parse_rules(spec: str) -> list[HostRule]:
    return [parse_rule(item) for item in spec.split(",") if item.strip()]


def parse_networks(spec: str) -> list[IPNetwork]:
    """AGENTIC_WEB_ALLOWED_NETWORKS: comma-separated CIDRs (a bare address is one host)."""
    out: list[IPNetwork] = []
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not a network (CIDR such as 192.168.1.0/24, or an address)") from None
    return out


def address_kind(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address (None: it is)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return address_kind(ip.ipv4_mapped)
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("link-local (cloud metadata lives there)", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return kind
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass
class Target:
    """A checked URL: where it really goes (`ip`), and how to ask for it there."""

    url: str
    scheme: str
    host: str
    port: int
    ip: str

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return f"{self.scheme}://{_url_host(self.host)}" + ("" if self.port == default else f":{self.port}")

    @property
    def pinned_url(self) -> str:
        parts = urlsplit(self.url)
        path = parts.path or "/"
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.scheme}://{_url_host(self.ip)}:{self.port}{path}{query}"

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return _url_host(self.host) + ("" if self.port == default else f":{self.port}")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass
class EgressPolicy:
    rules: list[HostRule]
    networks: list[IPNetwork] = field(default_factory=list)

    @classmethod
    def from_settings(cls, domains: str, networks: str = "") -> EgressPolicy:
        return cls(parse_rules(domains), parse_networks(networks))

    def describe(self) -> str:
        return ", ".join(str(r) for r in self.rules) or "(empty)"

    def check_url(self, url: str) -> tuple[str, str, int]:
        """The URL's scheme, normalised host and port when the allow-list allows it (no DNS)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise EgressRefused(f"{url!r} is not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise EgressRefused(f"{url!r}: only http and https URLs are fetched, not {scheme or 'a relative URL'}")
        if parts.username is not None or parts.password is not None:
            raise EgressRefused(f"{url!r}: URLs with credentials (user@host) are not fetched")
        if not parts.hostname:
            raise EgressRefused(f"{url!r} has no host")
        try:
            host = normalise_host(parts.hostname)
        except ValueError as exc:
            raise EgressRefused(str(exc)) from None
        port = port if port is not None else (443 if scheme == "https" else 80)
        if not any(rule.matches(host, port) for rule in self.rules):
            where = f"{_url_host(host)}:{port}" if port not in DEFAULT_PORTS else host
            raise EgressRefused(
                f"{where} is not on the web allow-list (AGENTIC_WEB_ALLOWED_DOMAINS: {self.describe()})"
            )
        return scheme, host, port

    def check_address(self, host: str, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        kind = address_kind(ip)
        if kind is None or any(ip in net for net in self.networks):
            return
        what = f"{host} is" if host == str(ip) else f"{host} resolves to {ip},"
        raise EgressRefused(
            f"{what} a {kind} address: refused (SSRF); an operator may open a network on purpose with "
            "AGENTIC_WEB_ALLOWED_NETWORKS"
        )

    async def target(self, url: str, resolve: Resolver) -> Target:
        """`url` checked by name, resolved, and every address checked: where to connect."""
        scheme, host, port = self.check_url(url)
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                addresses = await resolve(host, port)
            except OSError as exc:
                raise FetchFailed(f"{host} could not be resolved ({exc})") from None
        if not addresses:
            raise FetchFailed(f"{host} has no address")
        for address in addresses:
            self.check_address(host, address)
        return Target(url=url, scheme=scheme, host=host, port=port, ip=addresses[0].split("%", 1)[0])


@dataclass
class Response:
    """What one fetch got: the final URL, the redirects followed, and the body (up to the limit)."""

    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool
    redirects: list[str]
    elapsed_s: float


class Fetcher:
    """The web tools' HTTP client: every hop checked (`EgressPolicy`), pinned to the checked
    address, robots.txt respected, bounded in size, time and pages per minute."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        user_agent: str,
        max_bytes: int = 2_000_000,
        timeout_s: float = 15.0,
        max_redirects: int = 5,
        max_pages_per_minute: int = 30,
        resolve: Resolver = system_resolve,
        clock: Callable[[], float] = time.monotonic,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self.policy = policy
        self.user_agent = user_agent
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.max_pages_per_minute = max_pages_per_minute
        self.resolve = resolve
        self.clock = clock
        self._pages: deque[float] = deque()
        self._robots: dict[str, tuple[float, urllib.robotparser.RobotFileParser | None, str]] = {}
        # trust_env=False: no proxy from the environment (it would connect somewhere unchecked)
        self._http = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            verify=verify,  # the certificate is checked against the URL's name (SNI), not the pinned address
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=0),
        )

    async def close(self) -> None:
        await self._http.aclose()

    def _count_page(self) -> None:
        now = self.clock()
        while self._pages and now - self._pages[0] >= 60.0:
            self._pages.popleft()
        if len(self._pages) >= self.max_pages_per_minute:
            wait = 60.0 - (now - self._pages[0])
            raise EgressRefused(
                f"the page budget is spent: {self.max_pages_per_minute} pages a minute "
                f"(AGENTIC_WEB_MAX_PAGES_PER_MINUTE); try again in {wait:.0f} s"
            )
        self._pages.append(now)

    async def fetch(self, url: str, *, accept: str = "text/html,application/xhtml+xml,text/plain;q=0.9") -> Response:
        """GET `url`, following redirects hop by hop (each checked, robots.txt included)."""
        self.policy.check_url(url)  # refuse before counting a page
        self._count_page()
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url, accept, t0, robots=True, limit=self.max_bytes)
        except TimeoutError:
            raise FetchFailed(f"{url} did not arrive within {self.timeout_s:g} s (AGENTIC_WEB_TIMEOUT_S)") from None

    async def _follow(self, url: str, accept: str, t0: float, *, robots: bool, limit: int) -> Response:
        hops: list[str] = []
        current = url
        while True:
            try:
                target = await self.policy.target(current, self.resolve)
                if robots:
                    await self._check_robots(target)
            except EgressRefused as exc:
                if hops:
                    chain = " → ".join([*hops, current])
                    raise EgressRefused(f"redirect {chain}: {exc.reason}") from None
                raise
            status, headers, body, truncated = await self._get(target, accept, limit)
            location = headers.get("location")
            if status in REDIRECTS and location:
                hops.append(current)
                if len(hops) > self.max_redirects:
                    raise FetchFailed(
                        f"{url}: more than {self.max_redirects} redirects (AGENTIC_WEB_MAX_REDIRECTS): "
                        + " → ".join(hops)
                    )
                current = urljoin(current, location)
                continue
            ctype = headers.get("content-type", "")
            mime, _, params = ctype.partition(";")
            charset = next(
                (p.split("=", 1)[1].strip().strip('"') for p in params.split(";") if p.strip().startswith("charset=")),
                None,
            )
            return Response(
                url=current,
                status=status,
                content_type=mime.strip().lower(),
                charset=charset,
                body=body,
                truncated=truncated,
                redirects=hops,
                elapsed_s=time.perf_counter() - t0,
            )

    async def _get(self, target: Target, accept: str, limit: int) -> tuple[int, httpx.Headers, bytes, bool]:
        headers = {"Host": target.host_header, "User-Agent": self.user_agent, "Accept": accept}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with self._http.stream("GET", target.pinned_url, headers=headers, extensions=extensions) as resp:
                if resp.status_code in REDIRECTS:
                    return resp.status_code, resp.headers, b"", False
                declared = resp.headers.get("content-length", "")
                chunks: list[bytes] = []
                size = 0
                truncated = declared.isdigit() and int(declared) > limit
                if not truncated:
                    async for chunk in resp.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > limit:
                            truncated = True
                            break
                else:  # read what the limit allows, no more
                    async for chunk in resp.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size >= limit:
                            break
                body = b"".join(chunks)[:limit]
                return resp.status_code, resp.headers, body, truncated
        except httpx.TimeoutException:
            raise FetchFailed(
                f"{target.url} did not answer within {self.timeout_s:g} s (AGENTIC_WEB_TIMEOUT_S)"
            ) from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{target.url} could not be fetched: {type(exc).__name__}: {exc}") from None

    async def _check_robots(self, target: Target) -> None:
        origin = target.origin
        cached = self._robots.get(origin)
        if cached is None or self.clock() - cached[0] > ROBOTS_TTL_S:
            parser, why = await self._read_robots(origin)
            cached = (self.clock(), parser, why)
            self._robots[origin] = cached
        _, parser, why = cached
        path = urlsplit(target.url)
        rel = (path.path or "/") + (f"?{path.query}" if path.query else "")
        if parser is None:
            raise EgressRefused(f"robots.txt of {origin} could not be read ({why}): nothing there is fetched")
        if not parser.can_fetch(self.user_agent, rel):
            raise EgressRefused(f"robots.txt of {origin} disallows {rel} for {self.user_agent.split('/')[0]}")

    async def _read_robots(self, origin: str) -> tuple[urllib.robotparser.RobotFileParser | None, str]:
        """The origin's robots.txt parsed (RFC 9309: 4xx → everything allowed; 5xx, unreachable
        or redirected off the allow-list → nothing allowed, `why`)."""
        try:
            resp = await self._follow(
                origin + "/robots.txt", "text/plain", time.perf_counter(), robots=False, limit=ROBOTS_MAX_BYTES
            )
        except (EgressRefused, FetchFailed) as exc:
            return None, str(exc)
        parser = urllib.robotparser.RobotFileParser()
        if 400 <= resp.status < 500:
            parser.parse([])
        elif resp.status >= 500 or resp.status < 200:
            return None, f"HTTP {resp.status}"
        else:
            parser.parse(resp.body.decode(resp.charset or "utf-8", errors="replace").splitlines())
        return parser, ""


def allowed_by_name(policy: EgressPolicy, url: str) -> bool:
    """Whether `url` passes the allow-list by name (no DNS): a hint for search results."""
    try:
        policy.check_url(url)
    except EgressRefused:
        return False
    return True
