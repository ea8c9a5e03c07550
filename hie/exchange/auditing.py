"""The audit trail as the exchange exposes it: ``/fhir/AuditEvent``, a resident's access
log in plain language, and the break-glass review list.

Reading the trail needs a scope that names AuditEvent itself (``system/AuditEvent.rs``
or ``user/AuditEvent.rs``): a clinical wildcard such as ``system/*.rs`` does not reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hie.audit.event import BREAK_GLASS, event_of, with_id
from hie.context import Interaction, RequestContext
from hie.errors import Forbidden, InvalidSearch, NotFound
from hie.exchange.results import SearchResult
from hie.search.dates import parse_date, to_datetime
from hie.storage.ports import AuditLog, AuditQuery, StoredAudit, StoredResource

AUDIT_TYPE = "AuditEvent"
SEARCH_PARAMETERS = (
    "patient",
    "agent",
    "entity",
    "type",
    "subtype",
    "action",
    "outcome",
    "purpose",
    "date",
    "_count",
    "_cursor",
)

# Plain-language labels for the resident's access log: (English, Chinese).
PURPOSES: dict[str, tuple[str, str]] = {
    "TREAT": ("treatment", "诊疗"),
    "ETREAT": ("emergency treatment", "急诊救治"),
    "BTG": ("emergency access (break-glass)", "紧急调阅"),
    "HPAYMT": ("payment", "医保结算"),
    "HOPERAT": ("healthcare operations", "医疗机构管理"),
    "PUBHLTH": ("public health", "公共卫生"),
    "HRESCH": ("research", "医学研究"),
    "PATRQT": ("your own request", "本人申请"),
    "COC": ("continuity of care", "连续诊疗"),
}
_NO_PURPOSE = ("no purpose stated", "未说明目的")
ACTIONS: dict[str, tuple[str, str]] = {
    "read": ("viewed a record", "查看了一条记录"),
    "vread": ("viewed an earlier version of a record", "查看了一条记录的历史版本"),
    "search": ("searched your records", "检索了您的记录"),
    "history": ("viewed the history of your records", "查看了记录的修改历史"),
    "everything": ("viewed your whole record", "调阅了您的全部记录"),
    "create": ("added a record", "新增了一条记录"),
    "update": ("changed a record", "修改了一条记录"),
    "patch": ("changed a record", "修改了一条记录"),
    "delete": ("deleted a record", "删除了一条记录"),
    "export": ("exported your records", "导出了您的记录"),
    # what a resident did with their card (card.consents)
    "card.consent-record": ("recorded your consent decision", "登记了您的授权决定"),
    "card.consent-withdraw": ("withdrew a consent at your request", "按您的要求撤回了授权"),
    "card.consents": ("showed you your consents", "向您展示了您的授权"),
}
_OTHER_ACTION = ("accessed your records", "访问了您的记录")
# Accesses a resident does not need to be told about: their own look at the log.
_NOT_LISTED = frozenset({"access-log"})


@dataclass(frozen=True, slots=True)
class AccessLogEntry:
    """One line of a resident's access log."""

    when: datetime
    who: str  # the client (system or person) that accessed
    organization: str | None  # its organisation's name, or reference if unnamed
    purpose: str | None
    purpose_en: str
    purpose_zh: str
    action: str
    action_en: str
    action_zh: str
    break_glass: bool
    reason: str | None
    refused: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "when": self.when.isoformat(),
            "who": self.who,
            "organization": self.organization,
            "purpose": self.purpose,
            "purposeLabel": {"en": self.purpose_en, "zh": self.purpose_zh},
            "action": self.action,
            "actionLabel": {"en": self.action_en, "zh": self.action_zh},
            "breakGlass": self.break_glass,
            "reason": self.reason,
            "refused": self.refused,
        }


def _token(value: str) -> str:
    return value.rsplit("|", 1)[-1]


def _patient(value: str) -> str:
    return "Patient/" + value.rstrip("/").rsplit("/", 1)[-1]


class AuditTrail:
    def __init__(
        self,
        log: AuditLog,
        *,
        default_count: int,
        max_count: int,
        organization_name: Callable[[str], str | None],
        before_read: Callable[[], None] = lambda: None,
    ) -> None:
        """``before_read`` brings the chain up to date (``AuditSink.drain``): every read of
        the trail runs it first, so no answered access is missing from what it finds."""
        self._log = log
        self._before_read = before_read
        self._default_count = default_count
        self._max_count = max_count
        self._organization_name = organization_name

    # -- /fhir/AuditEvent --------------------------------------------------------

    @staticmethod
    def require(ctx: RequestContext, interaction: Interaction) -> None:
        if not ctx.scopes.names_type(interaction, AUDIT_TYPE):
            raise Forbidden(
                "reading the audit trail needs a scope naming AuditEvent "
                "(system/AuditEvent.rs or user/AuditEvent.rs)"
            )

    def read(self, ctx: RequestContext, id_: str) -> StoredResource:
        self.require(ctx, Interaction.READ)
        self._before_read()
        found = self._log.get(int(id_)) if id_.isdigit() else None
        if found is None:
            raise NotFound(f"AuditEvent/{id_} is not known")
        return self._resource(found)

    def search(self, ctx: RequestContext, params: Sequence[tuple[str, str]]) -> SearchResult:
        self.require(ctx, Interaction.SEARCH)
        query, echo = self.query(params)
        self._before_read()
        rows = self._log.search(query)
        more = len(rows) > query.count - 1
        rows = rows[: query.count - 1]
        return SearchResult(
            resource_type=AUDIT_TYPE,
            entries=[self._resource(r) for r in rows],
            total=None,
            next_cursor=str(rows[-1].seq) if more and rows else None,
            params=echo,
        )

    def query(self, params: Sequence[tuple[str, str]]) -> tuple[AuditQuery, list[tuple[str, str]]]:
        fields: dict[str, Any] = {}
        count = self._default_count
        echo: list[tuple[str, str]] = []
        for name, value in params:
            if name in ("_format", "_pretty"):
                continue
            if name not in SEARCH_PARAMETERS:
                raise InvalidSearch(f"parameter '{name}' is not supported on AuditEvent")
            if name == "_cursor":
                if not value.isdigit():
                    raise InvalidSearch("parameter '_cursor' is not valid")
                fields["before_seq"] = int(value)
                continue
            echo.append((name, value))
            if name == "_count":
                if not value.isdigit():
                    raise InvalidSearch(f"parameter '_count' must be a whole number, not '{value}'")
                count = max(1, min(int(value), self._max_count))
            elif name == "date":
                self._date(value, fields)
            elif name == "patient":
                fields["patient"] = _patient(value)
            elif name == "agent":
                if value.startswith("Organization/"):
                    fields["organization"] = value
                else:
                    fields["agent"] = _token(value)
            elif name == "entity":
                fields["entity"] = value
            elif name == "purpose":
                fields["purpose"] = _token(value)
                if fields["purpose"] == BREAK_GLASS:
                    fields["break_glass"] = True
            else:
                fields[name] = _token(value)
        return AuditQuery(count=count + 1, **fields), echo

    @staticmethod
    def _date(value: str, fields: dict[str, Any]) -> None:
        prefix = value[:2] if value[:2].isalpha() else "eq"
        text = value[2:] if value[:2].isalpha() else value
        try:
            span = parse_date(text)
        except ValueError as exc:
            raise InvalidSearch(f"parameter 'date': {exc}") from exc
        low, high = to_datetime(span.low), to_datetime(span.high + 1)
        if prefix in ("ge", "sa", "eq"):
            fields["recorded_from"] = low if prefix != "sa" else high
        if prefix in ("gt",):
            fields["recorded_from"] = high
        if prefix in ("lt", "eb"):
            fields["recorded_to"] = low
        if prefix in ("le", "eq"):
            fields["recorded_to"] = high
        if prefix not in ("ge", "gt", "le", "lt", "eq", "sa", "eb"):
            raise InvalidSearch(f"parameter 'date' does not support the prefix '{prefix}'")

    @staticmethod
    def _resource(found: StoredAudit) -> StoredResource:
        content = with_id(found.content, found.recorded, found.seq, found.prev_hash, found.hash)
        return StoredResource(AUDIT_TYPE, str(found.seq), 1, found.recorded, False, content)

    # -- review ------------------------------------------------------------------

    def break_glass(self, *, since: datetime | None = None, count: int = 100) -> list[StoredAudit]:
        self._before_read()
        return self._log.search(AuditQuery(break_glass=True, recorded_from=since, count=count))

    def access_log(self, patients: set[str], *, count: int = 100) -> list[AccessLogEntry]:
        """Who accessed any of ``patients`` (one person's linked records), newest first."""
        self._before_read()
        rows: list[StoredAudit] = []
        for patient in sorted(patients):
            rows.extend(self._log.search(AuditQuery(patient=patient, count=count * 2)))
        unique = {r.seq: r for r in rows}
        out: list[AccessLogEntry] = []
        names: dict[str, str | None] = {}
        for seq in sorted(unique, reverse=True):
            entry = self._entry(unique[seq], names)
            if entry is not None:
                out.append(entry)
            if len(out) >= count:
                break
        return out

    def _entry(self, row: StoredAudit, names: dict[str, str | None]) -> AccessLogEntry | None:
        event = event_of(row.content, row.recorded)
        action = event["subtype"][0]["code"]
        if action in _NOT_LISTED:
            return None
        who, organization = "", None
        for agent in event.get("agent", []):
            party = agent.get("who", {})
            if "identifier" in party and not who:
                who = party["identifier"]["value"]
            reference = party.get("reference", "")
            if reference.startswith("Practitioner/"):
                who = reference
            if reference.startswith("Organization/"):
                if reference not in names:
                    names[reference] = self._organization_name(reference)
                organization = names[reference] or reference
        purpose, reason = None, None
        for item in event.get("purposeOfEvent", []):
            purpose = item["coding"][0]["code"]
            reason = item.get("text")
        purpose_en, purpose_zh = PURPOSES.get(purpose or "", _NO_PURPOSE)
        action_en, action_zh = ACTIONS.get(action, _OTHER_ACTION)
        return AccessLogEntry(
            when=row.recorded,
            who=who,
            organization=organization,
            purpose=purpose,
            purpose_en=purpose_en,
            purpose_zh=purpose_zh,
            action=action,
            action_en=action_en,
            action_zh=action_zh,
            break_glass=purpose == BREAK_GLASS,
            reason=reason,
            refused=event.get("outcome") != "0",
        )
