"""What ``hie hl7 import | errors | replay`` do, as functions over the inbox.

An imported file goes through the same path as a message on the wire: intake (checks,
sender, ACK decision), the inbox (duplicates included), then the workers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.hl7v2.batch import split_batch
from adapters.hl7v2.inbox import Inbox, InboxEntry
from adapters.hl7v2.intake import Intake


@dataclass(frozen=True)
class Imported:
    """One message of an imported file and what intake made of it."""

    source: str
    index: int
    control_id: str
    message_type: str
    ack_code: str
    outcome: str
    inbox_id: int | None
    reason: str

    @property
    def accepted(self) -> bool:
        return self.ack_code in ("AA", "CA") and self.outcome != "conflict"


@dataclass(frozen=True)
class ImportReport:
    source: str
    messages: list[Imported]
    problems: list[str]


def import_bytes(
    data: bytes, source: str, intake: Intake, inbox: Inbox, chunk: int = 500
) -> ImportReport:
    content = split_batch(data)
    out = []
    prepared_all = [intake.prepare(raw, f"file:{source}", "import") for raw in content.messages]
    results = []
    for start in range(0, len(prepared_all), chunk):  # one commit per chunk, not per message
        results += inbox.store_batch([p.new for p in prepared_all[start : start + chunk]])
    for index, (prepared, result) in enumerate(zip(prepared_all, results, strict=True), start=1):
        new = prepared.new
        reason = prepared.verdict.reason
        if result.outcome == "duplicate":
            reason = f"duplicate of inbox message {result.original_id}; not processed again"
        elif result.outcome == "conflict":
            reason = f"conflicts with inbox message {result.original_id} (same MSH-10)"
        out.append(
            Imported(
                source=source,
                index=index,
                control_id=new.control_id,
                message_type=new.message_type,
                ack_code=new.ack_code if result.outcome != "conflict" else "AE",
                outcome=result.outcome,
                inbox_id=result.id if result.id is not None else result.original_id,
                reason=reason,
            )
        )
    return ImportReport(source, out, content.problems)


def import_files(paths: Iterable[Path], intake: Intake, inbox: Inbox) -> list[ImportReport]:
    return [import_bytes(Path(p).read_bytes(), str(p), intake, inbox) for p in paths]


def list_errors(inbox: Inbox, *, rejected: bool = False, limit: int = 100) -> list[InboxEntry]:
    """Failed messages with their reasons (and intake refusals with ``rejected``)."""
    states = ["failed", "rejected"] if rejected else ["failed"]
    return inbox.entries(states, limit=limit)


def replay(
    inbox: Inbox, ids: Sequence[int] = (), *, failed: bool = False
) -> tuple[list[int], list[str]]:
    """Queue messages for mapping again (after a code map or sender fix)."""
    if not ids and not failed:
        return [], ["name inbox ids to replay, or --failed"]
    return inbox.requeue(ids, failed=failed)
