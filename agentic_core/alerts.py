"""Alerts as they arrive (Alertmanager webhook v4, generic events) and as the platform holds them.

No I/O. The intake validates payloads with these models, turns them into one `AlertGroup`
per Alertmanager group, and derives the incident's workflow id from the group with
`incident_id_for`, so repeats and retries of a group always reach the same incident.
`redact_group` takes the secrets out of a group's texts before anything stores or shows them.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from agentic_core.redaction import SECRET, Redactor

# Alertmanager's "zero" time for an alert that has not ended.
_ZERO_TIME_YEAR = 1


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


def _text(value: str) -> str:
    """Text the platform can carry and store: valid Unicode without NUL. JSON lets a payload
    escape a lone surrogate (`"\\ud800"`) or a NUL (`"\\u0000"`); Python keeps both, but no
    UTF-8 encoder (Temporal's payloads, Telegram) can write the first and PostgreSQL's text and
    jsonb refuse the second, so they are refused here, with the field's name, not later."""
    nul = value.find("\x00")
    if nul >= 0:
        raise PydanticCustomError(
            "nul_character",
            "contains a NUL character (U+0000) at character {at}, which the ledger cannot store",
            {"at": nul},
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PydanticCustomError(
                "lone_surrogate",
                "contains a lone surrogate (U+{code}) at character {at}: not valid Unicode text",
                {"code": f"{ord(value[exc.start]):04X}", "at": exc.start},
            ) from None
    return value


Text = Annotated[str, AfterValidator(_text)]
"""A string of an incoming payload (see `_text`)."""


def _storable_time(value: datetime) -> datetime:
    """A timestamp the ledger (PostgreSQL timestamptz, written through asyncpg in UTC) can hold.
    A time without a zone is taken as UTC. One whose UTC instant falls outside years 1 to 9999
    (`0001-01-01T00:00:00+14:00`, `9999-12-31T23:59:59-14:00`) cannot be converted: refused."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range",
            "is outside the range the ledger can store: in UTC it must fall within the years 1 to 9999",
        ) from None
    return value


Timestamp = Annotated[datetime, AfterValidator(_storable_time)]
"""A timestamp of an incoming payload (see `_storable_time`)."""


def _labels(value: Any) -> Any:
    """Label and annotation values are strings; numbers and booleans are coerced, not refused."""
    if isinstance(value, dict):
        return {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in value.items()}
    return value


class AmAlert(BaseModel):
    """One alert of an Alertmanager webhook (version 4)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    status: AlertStatus
    labels: dict[Text, Text] = Field(min_length=1)
    annotations: dict[Text, Text] = Field(default_factory=dict)
    starts_at: Timestamp = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: Text = Field(default="", alias="generatorURL")
    fingerprint: Text = Field(min_length=1, max_length=128)

    _coerce = field_validator("labels", "annotations", mode="before")(_labels)

    @field_validator("ends_at")
    @classmethod
    def _zero_is_none(cls, v: datetime | None) -> datetime | None:
        """Alertmanager's zero time (`0001-01-01T00:00:00Z`, any zone) means "not ended"."""
        if v is None or v.year <= _ZERO_TIME_YEAR:
            return None
        return _storable_time(v)


class AmWebhook(BaseModel):
    """The Alertmanager webhook payload, version 4."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    version: Literal["4"]
    group_key: Text = Field(alias="groupKey", min_length=1, max_length=4096)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: AlertStatus
    receiver: Text = Field(min_length=1, max_length=256)
    group_labels: dict[Text, Text] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[Text, Text] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[Text, Text] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: Text = Field(default="", alias="externalURL")
    alerts: list[AmAlert] = Field(min_length=1, max_length=1000)

    _coerce = field_validator("group_labels", "common_labels", "common_annotations", mode="before")(_labels)


class GenericEvent(BaseModel):
    """`POST /events`: another detector's event (Coroot, Renovate, a script) in a neutral shape."""

    model_config = ConfigDict(extra="ignore")

    source: Text = Field(min_length=1, max_length=128, description="the detector, e.g. coroot, renovate")
    title: Text = Field(min_length=1, max_length=1024, description="what happened, one line")
    status: AlertStatus = AlertStatus.FIRING
    severity: Text = Field(default="warning", max_length=32)
    description: Text = Field(default="", max_length=16384)
    labels: dict[Text, Text] = Field(default_factory=dict)
    annotations: dict[Text, Text] = Field(default_factory=dict)
    group: Text | None = Field(
        default=None, max_length=1024, description="events with the same group are one incident (default: source+title)"
    )
    fingerprint: Text | None = Field(default=None, max_length=128)
    url: Text = ""
    occurred_at: Timestamp | None = None

    _coerce = field_validator("labels", "annotations", mode="before")(_labels)


class Alert(BaseModel):
    """One alert as the platform holds it, whatever its source."""

    fingerprint: str
    status: AlertStatus
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime
    ends_at: datetime | None = None
    generator_url: str = ""
    source: str = "alertmanager"

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def summary(self) -> str:
        a = self.annotations
        return a.get("summary") or a.get("description") or a.get("message") or self.alertname or self.fingerprint


class AlertGroup(BaseModel):
    """One Alertmanager group (or one generic event group): the unit that becomes one incident."""

    incident_id: str
    receiver: str
    group_key: str
    status: AlertStatus
    group_labels: dict[str, str] = Field(default_factory=dict)
    common_labels: dict[str, str] = Field(default_factory=dict)
    common_annotations: dict[str, str] = Field(default_factory=dict)
    external_url: str = ""
    truncated_alerts: int = 0
    alerts: list[Alert] = Field(default_factory=list)
    source: str = "alertmanager"

    @property
    def labels(self) -> dict[str, str]:
        """The labels that describe the group: common labels, else the first alert's."""
        if self.common_labels:
            return self.common_labels
        return self.alerts[0].labels if self.alerts else dict(self.group_labels)


def incident_id_for(receiver: str, group_key: str) -> str:
    """The incident's workflow id: stable for a group, safe in URLs and Telegram callback data."""
    digest = hashlib.sha256(f"{receiver}\x00{group_key}".encode()).hexdigest()
    return f"inc-{digest[:20]}"


def group_from_webhook(hook: AmWebhook) -> AlertGroup:
    return AlertGroup(
        incident_id=incident_id_for(hook.receiver, hook.group_key),
        receiver=hook.receiver,
        group_key=hook.group_key,
        status=hook.status,
        group_labels=hook.group_labels,
        common_labels=hook.common_labels,
        common_annotations=hook.common_annotations,
        external_url=hook.external_url,
        truncated_alerts=hook.truncated_alerts,
        alerts=[
            Alert(
                fingerprint=a.fingerprint,
                status=a.status,
                labels=a.labels,
                annotations=a.annotations,
                starts_at=a.starts_at,
                ends_at=a.ends_at,
                generator_url=a.generator_url,
            )
            for a in hook.alerts
        ],
    )


def group_from_event(ev: GenericEvent, now: datetime) -> AlertGroup:
    """The alert group of a generic event; `now` (the caller's clock: this module reads none)
    is its start when the event does not say when it occurred."""
    group_key = ev.group or f"{ev.source}:{ev.title}"
    labels = {"alertname": ev.labels.get("alertname", ev.title[:120]), "severity": ev.severity, **ev.labels}
    labels["source"] = ev.source
    annotations = {"summary": ev.title, **({"description": ev.description} if ev.description else {}), **ev.annotations}
    fingerprint = ev.fingerprint or hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
    started = ev.occurred_at or now
    receiver = f"events:{ev.source}"
    return AlertGroup(
        incident_id=incident_id_for(receiver, group_key),
        receiver=receiver,
        group_key=group_key,
        status=ev.status,
        group_labels={"source": ev.source},
        common_labels=labels,
        common_annotations=annotations,
        source=ev.source,
        alerts=[
            Alert(
                fingerprint=fingerprint,
                status=ev.status,
                labels=labels,
                annotations=annotations,
                starts_at=started,
                generator_url=ev.url,
                source=ev.source,
            )
        ],
    )


def redact_group(group: AlertGroup) -> tuple[AlertGroup, int]:
    """The group with the secrets in its texts replaced by `[SECRET_n]` placeholders, and how
    many distinct secrets were replaced (`agentic_core.redaction`; personal data is kept).

    Redacted: every label and annotation value (each alert's, the common and group ones), the
    group key and the URLs. Kept as they are: label and annotation names, the incident id and
    the fingerprints (derived from the raw values, so repeats of a group still reach the same
    incident and alert). One redactor serves the whole group: the same secret gets the same
    placeholder wherever it appears in it. Ordinary alerts have no secret, so nothing changes
    in them (no false positives on the awesome-prometheus-alerts and kube-prometheus rules:
    tests/unit/test_redaction.py); a label value is changed only when it holds a secret.
    """
    r = Redactor()
    kinds = frozenset({SECRET})

    def text(value: str) -> str:
        return r.redact(value, kinds)

    def texts(values: dict[str, str]) -> dict[str, str]:
        return {k: text(v) for k, v in values.items()}

    alerts = [
        a.model_copy(
            update={
                "labels": texts(a.labels),
                "annotations": texts(a.annotations),
                "generator_url": text(a.generator_url),
            }
        )
        for a in group.alerts
    ]
    clean = group.model_copy(
        update={
            "group_key": text(group.group_key),
            "group_labels": texts(group.group_labels),
            "common_labels": texts(group.common_labels),
            "common_annotations": texts(group.common_annotations),
            "external_url": text(group.external_url),
            "alerts": alerts,
        }
    )
    return clean, r.counts.get(SECRET, 0)
