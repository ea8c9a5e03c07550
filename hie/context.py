"""Who is asking, for which organisation, and for what purpose.

Authentication happens before the exchange is called; every exchange call carries a
:class:`RequestContext`. Scopes follow SMART App Launch v2
(``system|user|patient/Type.cruds``, ``*`` for any type) and accept the v1 suffixes
``read``, ``write`` and ``*``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property


class Interaction(StrEnum):
    """What an access does; each maps to one SMART v2 permission letter."""

    CREATE = "c"
    READ = "r"
    UPDATE = "u"
    DELETE = "d"
    SEARCH = "s"


_CLINICAL = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(\?.*)?$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


@dataclass(frozen=True)
class Scopes:
    """A parsed scope string. Clinical scopes grant permissions per resource type."""

    raw: str = ""

    @cached_property
    def _grants(self) -> dict[str, set[str]]:
        grants: dict[str, set[str]] = {}
        for item in self.raw.split():
            match = _CLINICAL.match(item)
            if not match:
                continue
            _, rtype, perms = match.group(1), match.group(2), match.group(3)
            perms = _V1.get(perms, perms)
            if not set(perms) <= set("cruds"):
                continue
            grants.setdefault(rtype, set()).update(perms)
        return grants

    @cached_property
    def names(self) -> frozenset[str]:
        return frozenset(self.raw.split())

    def allows(self, interaction: Interaction, resource_type: str) -> bool:
        grants = self._grants
        letter = interaction.value
        return letter in grants.get(resource_type, ()) or letter in grants.get("*", ())

    def names_type(self, interaction: Interaction, resource_type: str) -> bool:
        """Allowed by a scope naming ``resource_type`` itself (``*`` does not count)."""
        return interaction.value in self._grants.get(resource_type, ())

    def has(self, scope: str) -> bool:
        """A plain (non-clinical) scope such as ``card.identify``."""
        return scope in self.names


@dataclass(frozen=True)
class RequestContext:
    """The caller of one exchange operation."""

    actor: str
    organization: str | None = None
    purpose: str | None = None
    reason: str | None = None
    scopes: Scopes = field(default_factory=Scopes)
    source: str | None = None
    request_id: str | None = None
    token_id: str | None = None
    # A clinician signed in to the web UI: "Practitioner/ID" and "PractitionerRole/ID".
    practitioner: str | None = None
    role: str | None = None
    # When the access token was issued (epoch seconds): break-glass counts from it.
    issued_at: int | None = None

    @classmethod
    def system(cls, actor: str = "hie", organization: str | None = None) -> RequestContext:
        """The exchange acting for itself (imports, adapters' own bookkeeping)."""
        return cls(actor=actor, organization=organization, scopes=Scopes("system/*.cruds"))
