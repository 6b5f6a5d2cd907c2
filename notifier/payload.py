"""Alertmanager's webhook payload (version "4"), validated once at the edge.

Lenient on fields Alertmanager may add (``notification_reason``, ``routeLabels``, ...),
strict on the core ones. The ``receiver`` name arrives escaped by Go's
``regexp.QuoteMeta`` (``web\\.hook``) and is unescaped here; a firing alert's ``endsAt``
is Go's zero time (``0001-01-01T00:00:00Z``) and becomes ``None``.

This module only describes data: it never routes, stores or sends.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_serializer,
    model_validator,
)

Status = Literal["firing", "resolved"]

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
# Serialisation context for Alertmanager's own wire shape: a missing ``endsAt`` is
# written as Go's zero time instead of ``null``. Without it (the stored notification,
# the API's listings) ``None`` stays ``null``.
ALERTMANAGER_WIRE = {"alertmanager_wire": True}

# Go's regexp.QuoteMeta escapes exactly these characters with a backslash.
_QUOTE_META = re.compile(r"\\([\\.+*?()|\[\]{}^$])")


def unquote_meta(value: str) -> str:
    """Undo Go's ``regexp.QuoteMeta``: ``web\\.hook`` -> ``web.hook``."""
    return _QUOTE_META.sub(r"\1", value) if "\\" in value else value


def _zero_time_is_none(value: object) -> object:
    if isinstance(value, str) and value.startswith("0001-01-01T"):
        return None
    return value


ZeroableTime = Annotated[datetime | None, BeforeValidator(_zero_time_is_none)]
Labels = dict[str, str]


def labels_fingerprint(labels: Labels) -> str:
    """A stable fingerprint for alerts that arrive without one (hand-built payloads)."""
    digest = hashlib.sha256()
    for name in sorted(labels):
        digest.update(name.encode())
        digest.update(b"\xff")
        digest.update(labels[name].encode())
        digest.update(b"\xff")
    return digest.hexdigest()[:16]


class Alert(BaseModel):
    """One alert of a notification group."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    status: Status
    labels: Labels
    annotations: Labels = Field(default_factory=dict)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: ZeroableTime = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL")
    fingerprint: str = ""

    @field_serializer("ends_at", mode="wrap", when_used="json")
    def _zero_time_on_the_wire(
        self,
        value: datetime | None,
        handler: SerializerFunctionWrapHandler,
        info: SerializationInfo,
    ) -> object:
        if value is None and info.context and info.context.get("alertmanager_wire"):
            return GO_ZERO_TIME
        return handler(value)

    @model_validator(mode="after")
    def _fill_fingerprint(self) -> Alert:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", labels_fingerprint(self.labels))
        return self


class WebhookPayload(BaseModel):
    """The body Alertmanager POSTs to a webhook receiver."""

    # Parsing caches keys only: cached label values, allocated among a huge payload's
    # objects, outlive them and hold on to the memory of a burst after it is over.
    model_config = ConfigDict(
        extra="ignore", frozen=True, populate_by_name=True, cache_strings="keys"
    )

    version: Literal["4"]
    receiver: Annotated[
        str, BeforeValidator(lambda v: unquote_meta(v) if isinstance(v, str) else v)
    ]
    status: Status
    alerts: list[Alert] = Field(min_length=1)
    group_labels: Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL")
    group_key: str = Field(default="", alias="groupKey")
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)

    def to_alertmanager_json(self) -> dict[str, object]:
        """The payload in Alertmanager's own wire shape (camelCase, zero ``endsAt``)."""
        return self.model_dump(mode="json", by_alias=True, context=ALERTMANAGER_WIRE)
