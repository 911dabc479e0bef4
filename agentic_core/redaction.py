"""Redaction of secrets and personal data before text leaves the cluster (pure; no I/O).

`Redactor` replaces what it finds with stable placeholders (`[SECRET_1]`, `[EMAIL_1]`,
`[PHONE_1]`: the same value gets the same placeholder within one redactor) and remembers the
values in memory only, so placeholders in an answer can be put back inside the cluster
(`restore`). `counts` says how many distinct values of each kind it replaced: the only thing
about a redaction that may be logged, stored or shown.

What counts as a **secret** (kind `secret`):

- PEM private keys (`-----BEGIN … PRIVATE KEY-----` to its END line, or to the end of the text);
- credentials in URLs: the password of `scheme://user:password@host`; Slack webhook URLs' path;
- `Authorization:` headers (any scheme) and `Bearer <token>` (a token of 20+ characters or
  one of 8+ with digits and letters: "Bearer authentication failed" is prose, not a token);
- JWTs (`eyJ….eyJ….…`);
- well-known key formats: AWS access key ids (`AKIA…`, `ASIA…`), GitHub (`ghp_…`, `gho_…`,
  `ghs_…`, `ghu_…`, `ghr_…`, `github_pat_…`), GitLab (`glpat-…`), Slack (`xoxb-…` and the
  other `xox?-` tokens), Google API keys (`AIza…`), Stripe (`sk_live_…`, `rk_live_…`),
  OpenAI/Anthropic-style keys (`sk-…`), Telegram bot tokens (`123456789:AA…`);
- the value of a `key=value`, `key: value` or `"key": "value"` pair whose key *ends* with
  password, passwd, passphrase, secret, token, api_key/apikey, access_key, secret_key,
  private_key, credential(s) or authorization (so `db_password=…`, `GITHUB_TOKEN: …`,
  `"client_secret": "…"`; but not `secret_name: …` or `token_count=…`, which name things),
  or whose key is, or ends after `_`, `.` or `-` with, pass, pwd or pw (`DB_PASS=…`, `pwd=…`;
  not `bypass=…`; not `PWD=/srv`, a directory, nor `tests_pass=3`, a count of 4 digits or
  fewer). Templates (`{{ $value }}`), references to a secret kept elsewhere (`$DB_PASSWORD`,
  `${…}`, `$(…)`, `$1`, `$labels.x`; any other value starting with `$` is a secret),
  booleans, `null`/`none`, empty and already masked values (`***`, placeholders) are left
  alone, and so is a lower-case word after a bare lower-case key when the sentence goes on
  or it is a status word ("missing token: send one", "token: expired": prose).

What counts as **personal data** (kinds `email`, `phone`):

- email addresses;
- phone numbers written as phone numbers: international (`+<country> …`, 8-15 digits) or
  North-American style with separators (`(555) 123-4567`, `555-123-4567`). Bare digit runs
  are not phone numbers: alerts are full of counts, ports, ids and timestamps.

Not redacted, on purpose: IP addresses, host, node, pod and namespace names. In a homelab
or a small cluster these identify machines, not people, and the cloud model needs them to
plan (which node is full, which pod crash-loops). Person names are not detected (no
reliable pattern); usernames in URLs are kept (the password next to them is not).

Restoring: `restore(text, kinds=...)` puts values back for the kinds given. The planner
restores personal data everywhere in the cloud's answer, but never secrets: a secret
placeholder stays a placeholder in the prose, and a plan whose tool arguments contain one is
refused (a secret is never a tool argument chosen by a model outside the cluster). See
docs/incidents.md.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ALL_KINDS",
    "EMAIL",
    "PERSONAL_KINDS",
    "PHONE",
    "PLACEHOLDER_RE",
    "SECRET",
    "Redacted",
    "RedactingFilter",
    "Redactor",
    "describe_counts",
    "install_log_redaction",
    "redact",
    "redact_secrets",
]

SECRET = "secret"
EMAIL = "email"
PHONE = "phone"
ALL_KINDS: frozenset[str] = frozenset({SECRET, EMAIL, PHONE})
PERSONAL_KINDS: frozenset[str] = frozenset({EMAIL, PHONE})
_ORDER = (SECRET, EMAIL, PHONE)  # the order kinds are listed in notes

PLACEHOLDER_RE = re.compile(r"\[(SECRET|EMAIL|PHONE)_(\d+)\]")

# --------------------------------------------------------------------------- the patterns

# Each rule: (kind, compiled pattern, name of the group to replace, optional check on the value).
# Rules run in order on the text; what an earlier rule replaced is a placeholder that no later
# rule matches.
_Check = Callable[[re.Match[str]], bool]  # on the match; False: not a secret, look further on


def _token_like(value: str) -> bool:
    """A bearer credential, not a word or an address: 20+ characters, or 8+ with digits and letters."""
    return len(value) >= 20 or (len(value) >= 8 and any(c.isdigit() for c in value) and any(c.isalpha() for c in value))


_MASKED = {"", "null", "none", "nil", "true", "false", "redacted", "<redacted>"}


def _on_value(check: Callable[[str], bool]) -> _Check:
    return lambda m: check(m.group("v"))


# A value that only refers to a secret kept elsewhere: `${DB_PASSWORD}`, `$(cat f)`, `$DB_PASSWORD`
# (environment variables are upper case), `$1`, Prometheus' `$labels.x`, `$value`. Any other
# value that starts with `$` (`$ecretP4ss`, a bcrypt hash `$2b$12$…`) is the secret itself.
_REFERENCE = re.compile(
    r"\$(?:\{[^}]*\}|\([^)]*\)|[A-Z_][A-Z0-9_]*|\d+|(?:labels|value|externalLabels|externalURL)(?:\.\w+)*)"
)
# After a bare lower-case `token:` (`secret:`, `password:`…), a lower-case word is prose when
# the sentence goes on after it ("missing token: send one") or it is one of these words.
_PROSE_WORDS = frozenset(
    {
        *("send", "sent", "set", "unset", "required", "missing", "invalid", "expired", "revoked"),
        *("rejected", "denied", "empty", "none", "not", "is", "was", "has", "had", "found", "given"),
        *("provided", "needed", "refreshed", "rotated", "ok"),
    }
)


def _real_value(m: re.Match[str]) -> bool:
    """A key=value's value worth hiding: not a template, a reference, a placeholder, a boolean,
    a mask, a working directory (`PWD=/srv`) or a prose word after a bare lower-case key."""
    v = m.group("v").strip().strip("\"'").strip()
    if v.lower() in _MASKED or "{{" in v or PLACEHOLDER_RE.fullmatch(v):
        return False
    if v[:1] == "$":  # the reference may go on past the value's end: `${DB_PASSWORD}`
        ref = _REFERENCE.match(m.string, m.start("v") + m.group("v").index("$"))
        if ref is not None and ref.end() >= m.end("v") - (m.group("v")[-1:] in "\"'"):
            return False
    if set(v) <= set("*x.-_ …"):  # ****, xxxx, ----, …: already masked
        return False
    key = m.group("k").lower()
    if key.endswith("pwd") and v[:1] in "/~":  # the shell's PWD: a directory
        return False
    if key.endswith(("pass", "pw")) and v.isdigit() and len(v) <= 4:  # tests_pass=3: a count
        return False
    bare = m.group("k").isalpha() and m.group("k").islower()  # `token`, not `API_TOKEN` or `Token`
    if bare and m.group("sep") == ":" and m.group("v") == v and v.isalpha() and v.islower():
        return not (v in _PROSE_WORDS or re.match(r" +[a-z]", m.string[m.end("v") :]))
    return True


_PASSES = 4  # key=value passes at most (a value that is itself a key: see the rule)
_SECRET_KEY = (
    r"(?:[\w.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key"
    r"|private[_-]?key|credentials?)"
    # short forms only as the whole key or after a separator: DB_PASS, pwd, db.pw (not bypass, cwd)
    r"|(?:[\w.-]*[_.-])?(?:pass|pwd|pw))"
)

_RULES: list[tuple[str, re.Pattern[str], str, _Check | None]] = [
    (
        SECRET,
        re.compile(
            r"(?P<v>-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"
            r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|.*\Z))",
            re.DOTALL,
        ),
        "v",
        None,
    ),
    # https://hooks.slack.com/services/T000/B000/XXXX: the path is the credential
    (SECRET, re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<v>[A-Za-z0-9/_-]{8,})"), "v", None),
    # scheme://user:password@host
    (
        SECRET,
        re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@\"'<>]+:(?P<v>[^\s/@\"'<>]+)@(?=[\w\[.-])"),
        "v",
        _on_value(lambda v: not PLACEHOLDER_RE.fullmatch(v)),
    ),
    (SECRET, re.compile(r"(?i:\bbearer\s+)(?P<v>[A-Za-z0-9\-._~+/]+=*)"), "v", _on_value(_token_like)),
    # JWT: header.payload.signature, base64url, header and payload JSON objects
    (SECRET, re.compile(r"(?P<v>\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)"), "v", None),
    # well-known key formats
    (SECRET, re.compile(r"(?P<v>\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}\b)"), "v", None),
    (SECRET, re.compile(r"(?P<v>\bgh[pousr]_[A-Za-z0-9]{36,255}\b)"), "v", None),
    (SECRET, re.compile(r"(?P<v>\bgithub_pat_[A-Za-z0-9_]{22,255}\b)"), "v", None),
    (SECRET, re.compile(r"(?P<v>\bglpat-[A-Za-z0-9_-]{20,}\b)"), "v", None),
    (SECRET, re.compile(r"(?P<v>\bxox[abposre]-[A-Za-z0-9-]{10,}\b)"), "v", None),
    (SECRET, re.compile(r"(?P<v>\bAIza[0-9A-Za-z_-]{35}\b)"), "v", None),
    (SECRET, re.compile(r"(?P<v>\b[rs]k_live_[0-9A-Za-z]{16,}\b)"), "v", None),
    (SECRET, re.compile(r"(?P<v>\bsk-[A-Za-z0-9_-]{20,})"), "v", None),
    # a Telegram bot token, bare or in the Bot API's URL path (https://api.telegram.org/bot<token>/…)
    (SECRET, re.compile(r"(?P<v>(?:(?<=/bot)|(?<![\w:]))\d{8,10}:AA[A-Za-z0-9_-]{32,33}\b)"), "v", None),
    # key=value, key: value, "key": "value" (the key ends with a secret word). A placeholder
    # counts as such a key too: in `token = "db_password": "…"` the first pass redacts the
    # value "db_password", and a second pass (see `_apply`) the value after it.
    (
        SECRET,
        re.compile(
            r"(?i:(?<![\w-])[\"']?(?P<k>" + _SECRET_KEY + r"|\[SECRET_\d+\])[\"']?\s*(?P<sep>=(?![=~])|:(?!:))\s*)"
            r"(?P<v>\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'|[^\s,;&\"'<>(){}\[\]]*[^\s,;&\"'<>(){}\[\]:])"
        ),
        "v",
        _real_value,
    ),
    # Authorization: <scheme> <credential>, or Authorization: <credential>; after key=value, whose
    # value may follow "Authorization:" in prose
    (
        SECRET,
        re.compile(
            r"(?i:\bauthorization\b[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?)"
            r"(?P<v>[^\s\"',;]+)"
        ),
        "v",
        _on_value(lambda v: not PLACEHOLDER_RE.fullmatch(v) and v[:1] not in "<{$…" and "{{" not in v),
    ),
    (
        EMAIL,
        re.compile(r"(?P<v>(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b)"),
        "v",
        None,
    ),
    (
        PHONE,
        re.compile(r"(?P<v>(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?![\w.-]*\d))"),
        "v",
        _on_value(lambda v: 8 <= sum(c.isdigit() for c in v) <= 15),
    ),
    (PHONE, re.compile(r"(?P<v>(?<![\w.:/+-])(?:\(\d{3}\) ?|\d{3}[.-])\d{3}[ .-]\d{4}(?![\w:-]|\.\d))"), "v", None),
]


# --------------------------------------------------------------------------- the redactor


def _sub(pattern: re.Pattern[str], text: str, repl: Callable[[re.Match[str]], str | None]) -> str:
    """`pattern.sub(repl, text)`, except that a match `repl` turns down (None) does not consume
    its text: the search goes on from the next character ("bearer Bearer 9f3…": the first
    "bearer" is followed by a word, the second by a token)."""
    out: list[str] = []
    pos = search = 0
    while search <= len(text):
        m = pattern.search(text, search)
        if m is None:
            break
        rep = repl(m)
        if rep is None:
            search = m.start() + 1
            continue
        out += [text[pos : m.start()], rep]
        pos = m.end()
        search = pos if m.end() > m.start() else pos + 1
    out.append(text[pos:])
    return "".join(out)


@dataclass(frozen=True)
class Redacted:
    """A redacted text and how many distinct values of each kind were replaced."""

    text: str
    counts: dict[str, int]


@dataclass
class Redactor:
    """Redacts texts with stable placeholders and can restore them (the values stay in memory)."""

    _placeholder: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)
    _value: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    _next: dict[str, int] = field(default_factory=dict, repr=False)
    _reserved: set[str] = field(default_factory=set, repr=False)

    def __repr__(self) -> str:  # never the values
        return f"Redactor(counts={self.counts})"

    @property
    def counts(self) -> dict[str, int]:
        """Distinct values replaced so far, by kind (kinds with none left out)."""
        out: dict[str, int] = {}
        for kind, _value in self._placeholder:
            out[kind] = out.get(kind, 0) + 1
        return {k: out[k] for k in _ORDER if k in out}

    def _new_placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key in self._placeholder:
            return self._placeholder[key]
        n = self._next.get(kind, 0)
        while True:
            n += 1
            ph = f"[{kind.upper()}_{n}]"
            if ph not in self._reserved:
                break
        self._next[kind] = n
        self._placeholder[key] = ph
        self._value[ph] = key
        return ph

    def redact(self, text: str, kinds: Iterable[str] = ALL_KINDS) -> str:
        """`text` with every secret and personal datum (of `kinds`) replaced by its placeholder."""
        if not text:
            return text
        # Placeholder-like text already in the input is never assigned, so restoring cannot
        # turn a literal "[EMAIL_1]" into somebody's address.
        self._reserved.update(m.group(0) for m in PLACEHOLDER_RE.finditer(text))
        return self._apply(text, kinds if isinstance(kinds, frozenset) else frozenset(kinds))

    def _apply(self, text: str, kinds: frozenset[str]) -> str:
        for kind, pattern, group, check in _RULES:
            if kind in kinds:
                repl = functools.partial(self._replace, kind=kind, group=group, check=check)
                for _ in range(_PASSES if check is _real_value else 1):
                    before, text = text, _sub(pattern, text, repl)
                    if text == before:
                        break
        return text

    def _replace(self, m: re.Match[str], *, kind: str, group: str, check: _Check | None) -> str | None:
        value = m.group(group)
        if not value or (check is not None and not check(m)):
            return None
        inner = value
        quote = ""
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            quote, inner = value[0], value[1:-1]
        start, end = m.span(group)
        base = m.start(0)
        whole = m.group(0)
        return whole[: start - base] + quote + self._new_placeholder(kind, inner) + quote + whole[end - base :]

    def redact_messages(self, messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chat messages with their text contents redacted (other fields as they are)."""
        out = []
        for msg in messages:
            m = dict(msg)
            if isinstance(m.get("content"), str):
                m["content"] = self.redact(m["content"])
            out.append(m)
        return out

    def restore(self, text: str, kinds: Iterable[str] = ALL_KINDS) -> str:
        """`text` with the placeholders of `kinds` that this redactor assigned put back."""
        wanted = set(kinds)

        def back(m: re.Match[str]) -> str:
            found = self._value.get(m.group(0))
            if found is None or found[0] not in wanted:
                return m.group(0)
            # a value may hold an earlier placeholder (`u:[SECRET_1]x@host`): those come back too
            return PLACEHOLDER_RE.sub(back, found[1]) if "[" in found[1] else found[1]

        return PLACEHOLDER_RE.sub(back, text)

    def restore_obj(self, obj: Any, kinds: Iterable[str] = ALL_KINDS) -> Any:
        """`restore` on every string inside nested dicts and lists (keys included)."""
        kinds = frozenset(kinds)
        if isinstance(obj, str):
            return self.restore(obj, kinds)
        if isinstance(obj, dict):
            return {self.restore_obj(k, kinds): self.restore_obj(v, kinds) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.restore_obj(v, kinds) for v in obj]
        return obj

    def placeholders_in(self, obj: Any, kinds: Iterable[str] = ALL_KINDS) -> list[str]:
        """The placeholders of `kinds` this redactor assigned that occur in `obj` (strings in
        nested dicts and lists), in order of appearance, each once."""
        wanted, seen = set(kinds), []
        stack = [obj]
        texts: list[str] = []
        while stack:
            node = stack.pop(0)
            if isinstance(node, str):
                texts.append(node)
            elif isinstance(node, dict):
                stack[:0] = [x for kv in node.items() for x in kv]
            elif isinstance(node, list):
                stack[:0] = node
        for text in texts:
            for m in PLACEHOLDER_RE.finditer(text):
                found = self._value.get(m.group(0))
                if found is not None and found[0] in wanted and m.group(0) not in seen:
                    seen.append(m.group(0))
        return seen


def redact(text: str) -> Redacted:
    """Redact one text with a fresh `Redactor`."""
    r = Redactor()
    return Redacted(r.redact(text), r.counts)


def redact_secrets(text: str) -> str:
    """`text` with secrets replaced by `[SECRET_n]` (personal data left as it is): for logs."""
    return Redactor()._apply(text, frozenset({SECRET}))


def describe_counts(counts: dict[str, int]) -> str:
    """'2 secrets, 1 email' ('nothing' when empty): counts only, never values."""
    names = {
        SECRET: ("secret", "secrets"),
        EMAIL: ("email address", "email addresses"),
        PHONE: ("phone number", "phone numbers"),
    }
    parts = []
    for kind in (*_ORDER, *sorted(set(counts) - set(_ORDER))):
        n = counts.get(kind, 0)
        if n:
            one, many = names.get(kind, (kind, kind))
            parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts) or "nothing"


# --------------------------------------------------------------------------- logs


class RedactingFilter(logging.Filter):
    """Replaces secrets in a log record's message, exception and stack text (see `redact_secrets`).

    Installed on handlers (`install_log_redaction`), so it sees every record that reaches them,
    whichever logger emitted it. The record's arguments are merged into its message first.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return True
        clean = redact_secrets(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add one `RedactingFilter` to every handler of `logger` (default: the root logger). Call it
    after the process configured its handlers (`logging.basicConfig`). Idempotent."""
    target = logger if logger is not None else logging.getLogger()
    existing = next((f for h in target.handlers for f in h.filters if isinstance(f, RedactingFilter)), None)
    filt = existing or RedactingFilter()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(filt)
    return filt
