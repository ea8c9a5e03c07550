"""The one decision point for access to the shared record.

``decide`` is pure: the same context, interaction and resource always give the same
answer, and ``hie.exchange`` is its only caller. Until the consent work lands, the
policy permits everything that the caller's scopes allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hie.context import Interaction, RequestContext


@dataclass(frozen=True, slots=True)
class Access:
    """One access to decide: what is done to which resource."""

    interaction: Interaction
    resource_type: str
    resource_id: str | None = None
    custodian: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    permit: bool
    rule: str


class Decide(Protocol):
    def __call__(self, ctx: RequestContext, access: Access) -> Decision: ...


def permit_all(ctx: RequestContext, access: Access) -> Decision:
    return Decision(permit=True, rule="permit-all")
