"""Workers: claim inbox rows, map each message to FHIR, apply it in one exchange transaction.

Outcomes: ``mapped``; ``failed`` with the reason (a mapping error naming the field, or the
exchange's error) and never dropped; or, for transient trouble (the exchange answering
503, the database unreachable), back to the queue after a delay until ``max_attempts``.
In enhanced mode the application ACK that MSH-16 asks for is built here and stored with
the row for delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from adapters.hl7v2 import ack as acks
from adapters.hl7v2.ack import AckBuilder, Problem
from adapters.hl7v2.inbox import Inbox, InboxEntry
from adapters.hl7v2.message import CharsetError, Message, UnreadableMessage, read_message
from adapters.hl7v2.ports import Exchange
from adapters.hl7v2.senders import Sender, SenderRegistry
from adapters.hl7v2.to_fhir import MappingError, to_bundle
from hie.context import RequestContext, Scopes
from hie.errors import FhirError
from terminology.conceptmaps import ConceptMaps

log = logging.getLogger(__name__)

Result = Literal["mapped", "failed", "retry", "lost"]


def system_context(sender: Sender, entry_id: int) -> RequestContext:
    """Who writes a message's resources: the adapter, for the sender's organization."""
    return RequestContext(
        actor=f"hl7v2:{sender.label}",
        organization=sender.organization or None,
        scopes=Scopes("system/*.cruds"),
        source="hl7v2",
        request_id=f"hl7-inbox-{entry_id}",
    )


@dataclass(frozen=True)
class WorkerConfig:
    batch: int = 32
    # Messages applied in one exchange commit (group commit); 1: one commit per message.
    commit_batch: int = 8
    lease_seconds: float = 300.0
    idle_sleep: float = 0.2
    max_attempts: int = 5
    retry_delay: float = 30.0


class Worker:
    """Maps claimed inbox rows one by one, in the order they were received."""

    def __init__(
        self,
        inbox: Inbox,
        registry: SenderRegistry,
        exchange: Exchange,
        *,
        name: str = "hl7-worker",
        maps: ConceptMaps | None = None,
        ack_builder: AckBuilder | None = None,
        config: WorkerConfig | None = None,
        context_for: Callable[[Sender, int], RequestContext] = system_context,
    ) -> None:
        self.inbox = inbox
        self.registry = registry
        self.exchange = exchange
        self.name = name
        self.maps = maps
        self.acks = ack_builder or AckBuilder()
        self.config = config or WorkerConfig()
        self.context_for = context_for
        self.processed = 0

    def run_once(self) -> int:
        """Claim one batch and process it; returns how many rows were claimed."""
        entries = self.inbox.claim(self.name, self.config.batch, self.config.lease_seconds)
        self.process_many(entries)
        return len(entries)

    def process_many(self, entries: Sequence[InboxEntry]) -> list[Result]:
        """Process rows in order, applying up to ``commit_batch`` mapped messages per commit.

        A group is all or nothing in the exchange; when it fails for any reason its
        messages are applied again one by one, so one bad message fails alone.
        """
        results: dict[int, Result] = {}
        group: list[_Mapped] = []
        size = max(1, self.config.commit_batch)
        for entry in entries:
            mapped = self._map(entry)
            if isinstance(mapped, str):
                results[entry.id] = mapped
                continue
            group.append(mapped)
            if len(group) >= size:
                results.update(self._apply_group(group))
                group = []
        results.update(self._apply_group(group))
        return [results[e.id] for e in entries]

    def _apply_group(self, group: list[_Mapped]) -> dict[int, Result]:
        if not group:
            return {}
        if len(group) == 1:
            return {group[0].entry.id: self._apply(group[0])}
        try:
            self.exchange.transactions(
                [(self.context_for(m.sender, m.entry.id), m.bundle) for m in group]
            )
        except Exception as exc:
            log.info(
                "hl7 worker %s: a group of %d failed (%s: %s); applying them one by one",
                self.name,
                len(group),
                type(exc).__name__,
                exc,
            )
            # The exchange rewrote references in the Bundles it was given: map each
            # message again (rare) rather than copy every Bundle up front.
            out: dict[int, Result] = {}
            for m in group:
                again = self._map(m.entry)
                out[m.entry.id] = again if isinstance(again, str) else self._apply(again)
            return out
        finished = self.inbox.finish_many(
            self.name, [(m.entry.id, self._application_ack(m.message, "AA", ())) for m in group]
        )
        out = {}
        for m, ok in zip(group, finished, strict=True):
            out[m.entry.id] = "mapped" if ok else "lost"
            self.processed += ok
        return out

    def drain(self, timeout: float = 60.0) -> int:
        """Process until nothing is claimable (tools and tests); returns rows processed."""
        deadline = time.monotonic() + timeout
        done = 0
        while time.monotonic() < deadline:
            n = self.run_once()
            if n == 0:
                break
            done += n
        return done

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                claimed = self.run_once()
            except Exception:
                log.exception("hl7 worker %s: claim failed", self.name)
                claimed = 0
            if claimed == 0:
                stop.wait(self.config.idle_sleep)

    def process(self, entry: InboxEntry) -> Result:
        """Map one row and apply it in a transaction of its own."""
        mapped = self._map(entry)
        return mapped if isinstance(mapped, str) else self._apply(mapped)

    def _map(self, entry: InboxEntry) -> _Mapped | Result:
        """The row's transaction Bundle, or the row failed with the reason."""
        sender = self.registry.by_id(entry.sender_id) if entry.sender_id is not None else None
        if sender is None:
            return self._fail(entry, None, f"sender {entry.sender_id} is no longer registered")
        try:
            message = read_message(entry.raw, entry.charset or sender.charset)
        except (UnreadableMessage, CharsetError) as exc:
            return self._fail(entry, None, f"cannot read the stored message: {exc}")
        try:
            bundle = to_bundle(message, sender, self.maps, entry.received_at)
        except MappingError as exc:
            problem = Problem(
                102 if "date" in exc.reason or "number" in exc.reason else 207, exc.reason
            )
            return self._fail(entry, message, f"mapping: {exc}", problem, exc.location)
        return _Mapped(entry, sender, message, bundle)

    def _apply(self, mapped: _Mapped) -> Result:
        entry, sender, message, bundle = mapped
        try:
            self.exchange.transaction(self.context_for(sender, entry.id), bundle)
        except FhirError as exc:
            reason = f"exchange {exc.status}: {_issues(exc)}"
            if exc.status == 503:
                return self._retry(entry, reason)
            return self._fail(entry, message, reason, Problem(207, _issues(exc)))
        except Exception as exc:
            log.exception("hl7 worker %s: exchange failed on inbox %d", self.name, entry.id)
            return self._retry(entry, f"exchange unavailable: {type(exc).__name__}: {exc}")
        app_ack = self._application_ack(message, "AA", ())
        if self.inbox.finish(entry.id, self.name, "mapped", None, app_ack):
            self.processed += 1
            return "mapped"
        return "lost"

    def _retry(self, entry: InboxEntry, reason: str) -> Result:
        if entry.attempts + 1 >= self.config.max_attempts:
            return self._fail(
                entry, None, f"{reason} (gave up after {entry.attempts + 1} attempts)"
            )
        self.inbox.retry_later(entry.id, self.name, reason, self.config.retry_delay)
        return "retry"

    def _fail(
        self,
        entry: InboxEntry,
        message: Message | None,
        reason: str,
        problem: Problem | None = None,
        location: str = "",
    ) -> Result:
        log.warning(
            "hl7: inbox %d (%s %s) failed: %s",
            entry.id,
            entry.message_type,
            entry.control_id,
            reason,
        )
        app_ack = None
        if message is not None:
            if problem is not None and location:
                seg, _, rest = location.partition("-")
                field = int(rest.split(".")[0]) if rest.split(".")[0].isdigit() else 0
                problem = Problem(problem.code, problem.text, segment=seg, field=field)
            app_ack = self._application_ack(message, "AE", (problem or Problem(207, reason),))
        self.inbox.finish(entry.id, self.name, "failed", reason, app_ack)
        return "failed"

    def _application_ack(
        self, message: Message, code: Literal["AA", "AE"], problems: Iterable[Problem]
    ) -> bytes | None:
        if not acks.enhanced_mode(message.msh) or not acks.wants_application_ack(message.msh, code):
            return None
        return self.acks.ack(message.msh, message.delimiters, code, list(problems), message.charset)


class _Mapped(NamedTuple):
    entry: InboxEntry
    sender: Sender
    message: Message
    bundle: dict[str, Any]


def _issues(error: FhirError) -> str:
    parts = []
    for issue in error.all_issues():
        where = f" at {', '.join(issue.expression)}" if issue.expression else ""
        parts.append(f"{issue.diagnostics}{where}")
    return "; ".join(parts) or str(error)
