"""What a storm digest says (DESIGN §10), as the store keeps it inside its ``Notification``.

Only the data: how many groups fire and resolved, the top ones by severity with their
summaries, and where the console is. Building one from folded notifications is
``notifier.digest``'s job; rendering it is the channel's, through its digest template.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from notifier.payload import Status


class DigestGroup(BaseModel):
    """One folded group, as the digest lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Status
    severity: str
    alertname: str
    summary: str  # the group's summary annotation, or "" when it has none
    alerts: int


class DigestSummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    storm: str  # identifies the storm: its digests update one message
    started_at: float
    firing: int  # groups folded that were firing
    resolved: int  # groups folded that had resolved
    top: tuple[DigestGroup, ...]  # the most severe groups, most severe first
    console_url: str | None = None

    @property
    def groups(self) -> int:
        return self.firing + self.resolved

    @property
    def more(self) -> int:
        """Groups counted but not listed (the "+N more")."""
        return self.groups - len(self.top)
