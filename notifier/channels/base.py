"""The one small protocol every channel implements, and the errors it may raise.

Exception tree (a channel raises nothing else out of ``send``)::

    DeliveryError                 the notification did not reach the peer, or was refused
    ├── RetryableError            worth another attempt later: timeouts, connection errors,
    │                             HTTP 5xx/408/429, SMTP 4xx, Slack ``ratelimited``
    └── PermanentError            retrying will not help: other 4xx, SMTP 5xx, bad auth,
                                  unknown Slack channel, invalid phone number

Each carries a ``reason`` from the closed ``FailureReason`` enum (the ``reason`` label of
``notifier_notifications_failed_total``), a message that never contains a secret, and,
where the peer gave one, ``retry_after`` in seconds. Channels never retry and never
swallow an error: retry lives in the dispatcher alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from notifier.notification import Notification


class FailureReason(StrEnum):
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    CLIENT_ERROR = "client_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    TEMPLATE = "template"
    OTHER = "other"


class DeliveryError(Exception):
    retryable: bool = False

    def __init__(
        self, reason: FailureReason, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"


class RetryableError(DeliveryError):
    retryable = True


class PermanentError(DeliveryError):
    retryable = False


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the peer said when it took the notification."""

    channel: str
    detail: str = ""
    # Peer-side ids (Slack ts, Twilio SIDs), so an operator can find the message there.
    peer_ids: tuple[str, ...] = field(default_factory=tuple)

    @property
    def log_text(self) -> str:
        """The detail with the peer-side ids, as the delivery log keeps it."""
        return f"{self.detail} (ids {', '.join(self.peer_ids)})" if self.peer_ids else self.detail


class Channel(Protocol):
    """A configured destination. ``send`` delivers once or raises a ``DeliveryError``."""

    name: str
    type: str

    async def send(self, notification: Notification) -> Receipt: ...

    def preview(self, notification: Notification) -> str:
        """The message as it would be sent, for ``--dry-run`` and ``render``; sends nothing."""
        ...

    async def close(self) -> None: ...
