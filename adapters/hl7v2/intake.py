"""Intake: from a framed message to a stored inbox row and the ACK the sender gets.

For every framed message: read MSH, find the sender, decode by MSH-18 (or the sender's
default), check the structure, build the ACK, store raw bytes + ACK durably, answer.
The store always comes before the answer; a message that cannot be stored is answered AR
(table 0357 code 207), which tells the sender to try again later.

Acknowledgement modes:

* original (MSH-15 and MSH-16 empty): AA / AE / AR after the store;
* enhanced: the answer on the connection is the commit ACK (CA / CE / CR) after the store.
  Every message gets that one answer, whatever MSH-15 says: clients wait for it, and MLLP
  release 2 makes it the transport's acknowledgement. The application ACK that MSH-16 asks
  for is built later (by the worker after mapping, or now when intake refuses the message),
  stored in the inbox row and delivered to the sender's ``ack_address``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

from adapters.hl7v2 import ack as acks
from adapters.hl7v2.ack import AckBuilder, AckCode, Problem
from adapters.hl7v2.checks import Verdict, check_message
from adapters.hl7v2.committer import GroupCommitter
from adapters.hl7v2.inbox import Inbox, NewMessage, StoreResult
from adapters.hl7v2.message import (
    CharsetError,
    Header,
    Message,
    Segment,
    UnreadableMessage,
    peek_header,
    read_message,
)
from adapters.hl7v2.mllp import Inbound, Reply
from adapters.hl7v2.senders import Sender, SenderDefaults, SenderRegistry
from adapters.hl7v2.to_fhir.patient import patient_key

log = logging.getLogger(__name__)

StrictValidator = Callable[[Message], list[Problem]]


@dataclass(frozen=True)
class IntakeConfig:
    accept_unregistered: bool = False
    defaults: SenderDefaults = field(default_factory=SenderDefaults)
    max_message_bytes: int = 16 * 1024 * 1024


@dataclass
class Prepared:
    """A message ready to store, with the decision behind its ACK."""

    new: NewMessage
    verdict: Verdict
    sender: Sender | None
    message: Message | None


class Intake:
    """The synchronous part: parse, decide, build the ACK (no storage)."""

    def __init__(
        self,
        registry: SenderRegistry,
        acks_builder: AckBuilder,
        config: IntakeConfig | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        strict_validator: StrictValidator | None = None,
    ) -> None:
        self.registry = registry
        self.acks = acks_builder
        self.config = config or IntakeConfig()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.strict_validator = strict_validator

    def sender_for(self, header: Header) -> Sender | None:
        sender = self.registry.lookup(header.sending_application, header.sending_facility)
        if sender is None and self.config.accept_unregistered:
            sender = self.registry.register_on_first_contact(
                header.sending_application, header.sending_facility, self.config.defaults
            )
            log.info("hl7: registered sender %s on first contact", sender.label)
        return sender

    def prepare(self, raw: bytes, peer: str, channel: str = "mllp") -> Prepared:
        now = self._clock()
        try:
            header = peek_header(raw)
        except UnreadableMessage as exc:
            problem = Problem(exc.code, exc.reason, segment="MSH")
            answer = self.acks.minimal("AR", [problem], acks.guess_control_id(raw))
            return self._rejected(raw, peer, channel, now, None, Verdict("AR", (problem,)), answer)
        sender = self.sender_for(header)
        if sender is None:
            problem = Problem(
                103,
                f"the sender (MSH-3 {header.sending_application!r}, MSH-4"
                f" {header.sending_facility!r}) is not registered with this exchange",
                segment="MSH",
                field=3,
            )
            verdict = Verdict("AR", (problem,))
            answer = self._answer(header, verdict, "ascii")
            return self._rejected(raw, peer, channel, now, header, verdict, answer)
        try:
            message = read_message(raw, sender.charset, header)
        except CharsetError as exc:
            problem = Problem(exc.code, exc.reason, segment="MSH", field=18)
            verdict = Verdict("AR" if exc.code == 103 else "AE", (problem,))
            answer = self._answer(header, verdict, "ascii")
            return self._rejected(raw, peer, channel, now, header, verdict, answer, sender)
        except UnreadableMessage as exc:
            problem = Problem(exc.code, exc.reason, segment="MSH")
            verdict = Verdict("AR", (problem,))
            answer = self._answer(header, verdict, "ascii")
            return self._rejected(raw, peer, channel, now, header, verdict, answer, sender)
        verdict = check_message(message)
        if verdict.decision == "AA" and sender.strict and self.strict_validator is not None:
            extra = self.strict_validator(message)
            if extra:
                errors = any(p.severity in ("E", "F") for p in extra)
                verdict = Verdict("AE" if errors else "AA", verdict.problems + tuple(extra))
        answer = self._answer(header, verdict, message.charset)
        enhanced = acks.enhanced_mode(message.msh)
        app_ack = None
        if (
            enhanced
            and verdict.decision != "AA"
            and acks.wants_application_ack(message.msh, verdict.decision)
        ):
            app_ack = self.acks.ack(
                message.msh,
                message.delimiters,
                verdict.decision,
                verdict.problems,
                message.charset,
            )
        accepted = verdict.decision == "AA"
        new = NewMessage(
            raw=raw,
            peer=peer,
            channel=channel,
            received_at=now,
            sending_application=header.sending_application,
            sending_facility=header.sending_facility,
            control_id=message.control_id,
            message_type=message.message_type,
            version=message.version,
            charset=message.charset,
            sender_id=sender.id,
            state="received" if accepted else "rejected",
            ack_code=_code(message, verdict),
            ack=answer,
            error=None if accepted else verdict.reason,
            patient_key=patient_key(message, sender) if accepted else None,
            app_ack_mode=(message.application_ack_type[:2] or None) if enhanced else None,
            app_ack=app_ack,
            on_conflict=self._conflict_answer(header, message) if accepted else None,
        )
        return Prepared(new, verdict, sender, message)

    def _answer(self, header: Header, verdict: Verdict, codec: str) -> bytes:
        code: AckCode = verdict.decision
        if acks.enhanced_mode(header.msh):
            code = acks.commit_code(verdict.decision)
        return self.acks.ack(header.msh, header.delimiters, code, verdict.problems, codec)

    def _conflict_answer(
        self, header: Header, message: Message
    ) -> Callable[[int], tuple[bytes, str, str]]:
        def answer(original_id: int) -> tuple[bytes, str, str]:
            problem = Problem(
                205,
                f"control id {message.control_id!r} was already used by inbox message "
                f"{original_id} with different content; this message is kept for review",
                segment="MSH",
                field=10,
            )
            verdict = Verdict("AE", (problem,))
            code: AckCode = "CE" if acks.enhanced_mode(header.msh) else "AE"
            data = self.acks.ack(
                header.msh, header.delimiters, code, verdict.problems, message.charset
            )
            return data, code, f"conflict: {problem.describe()}"

        return answer

    def _rejected(
        self,
        raw: bytes,
        peer: str,
        channel: str,
        now: datetime,
        header: Header | None,
        verdict: Verdict,
        answer: bytes,
        sender: Sender | None = None,
    ) -> Prepared:
        msh = header.msh if header is not None else None
        new = NewMessage(
            raw=raw,
            peer=peer,
            channel=channel,
            received_at=now,
            sending_application=header.sending_application if header else "",
            sending_facility=header.sending_facility if header else "",
            control_id=header.control_id if header else "",
            message_type=_type_of(msh),
            version=msh[12][1] if msh is not None else "",
            charset=None,
            sender_id=sender.id if sender else None,
            state="rejected",
            ack_code=_ack_code(answer),
            ack=answer,
            error=verdict.reason,
        )
        return Prepared(new, verdict, sender, None)

    def internal_error(self, raw: bytes, reason: str) -> bytes:
        """The answer when storing failed: AR 207, so the sender retries later."""
        problem = Problem(207, reason)
        try:
            header = peek_header(raw)
        except UnreadableMessage:
            return self.acks.minimal("AR", [problem])
        code: AckCode = "CR" if acks.enhanced_mode(header.msh) else "AR"
        return self.acks.ack(header.msh, header.delimiters, code, [problem], "ascii")

    def oversized(self, head: bytes, size: int) -> bytes:
        """The answer to a frame over the size limit (not stored: it was not kept whole)."""
        problem = Problem(
            104,
            f"message of {size} bytes exceeds the maximum of "
            f"{self.config.max_message_bytes} bytes; it was not stored",
            segment="MSH",
        )
        try:
            header = peek_header(head)
        except UnreadableMessage:
            return self.acks.minimal("AR", [problem])
        code: AckCode = "CR" if acks.enhanced_mode(header.msh) else "AR"
        return self.acks.ack(header.msh, header.delimiters, code, [problem], "ascii")

    def receive(
        self, raw: bytes, inbox: Inbox, peer: str, channel: str
    ) -> tuple[Prepared, StoreResult]:
        """Prepare and store synchronously (batch import and tools)."""
        prepared = self.prepare(raw, peer, channel)
        return prepared, inbox.store(prepared.new)


class IntakeHandler:
    """The listener's handler: every frame gets exactly one answer, after the store.

    ``submit`` is the hot path: parse and check on the loop, queue for the group commit,
    answer from its callback. Senders with strict validation go through hl7apy in a
    thread; their messages (and anything after them on that connection) are chained so
    each connection's messages are stored in arrival order.
    """

    def __init__(self, intake: Intake, committer: GroupCommitter) -> None:
        self.intake = intake
        self.committer = committer
        self._chains: dict[str, asyncio.Future[None]] = {}

    def submit(self, inbound: Inbound, reply: Reply) -> None:
        if inbound.oversized:
            log.warning("hl7: %s sent %d bytes in one frame; refused", inbound.peer, inbound.size)
            reply(self.intake.oversized(inbound.payload, inbound.size))
            return
        if inbound.peer in self._chains or self._strict(inbound):
            self._chain(inbound, reply)
            return
        try:
            prepared = self.intake.prepare(inbound.payload, inbound.peer, "mllp")
        except Exception:
            log.exception("hl7: intake failed for a message from %s", inbound.peer)
            reply(self.intake.internal_error(inbound.payload, "the message could not be read"))
            return
        self.committer.submit(prepared.new, partial(self._stored, inbound, reply))

    def _stored(self, inbound: Inbound, reply: Reply, outcome: StoreResult | BaseException) -> None:
        if isinstance(outcome, StoreResult):
            reply(outcome.ack)
            return
        log.error("hl7: could not store a message from %s: %s", inbound.peer, outcome)
        reply(
            self.intake.internal_error(
                inbound.payload, "the message could not be stored; send it again later"
            )
        )

    async def __call__(self, inbound: Inbound) -> bytes:
        """The same as ``submit``, as a coroutine (for callers without callbacks)."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        def reply(answer: bytes | None) -> None:
            if not future.done():
                future.set_result(answer or b"")

        self.submit(inbound, reply)
        return await future

    def _strict(self, inbound: Inbound) -> bool:
        if self.intake.strict_validator is None:
            return False
        try:
            sender = self.intake.sender_for(peek_header(inbound.payload))
        except UnreadableMessage:
            return False
        return sender is not None and sender.strict

    def _chain(self, inbound: Inbound, reply: Reply) -> None:
        previous = self._chains.get(inbound.peer)
        task = asyncio.ensure_future(self._slow(inbound, reply, previous))
        self._chains[inbound.peer] = task

        def forget(done: asyncio.Future[None]) -> None:
            if self._chains.get(inbound.peer) is done:
                del self._chains[inbound.peer]

        task.add_done_callback(forget)

    async def _slow(
        self, inbound: Inbound, reply: Reply, previous: asyncio.Future[None] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            # hl7apy validation takes tens of milliseconds: keep it off the loop.
            prepared = await asyncio.to_thread(
                self.intake.prepare, inbound.payload, inbound.peer, "mllp"
            )
            outcome: StoreResult | BaseException = await self.committer.store(prepared.new)
        except Exception as exc:
            log.exception("hl7: intake failed for a message from %s", inbound.peer)
            outcome = exc
        self._stored(inbound, reply, outcome)


def _type_of(msh: Segment | None) -> str:
    if msh is None:
        return ""
    code, event = msh[9][1], msh[9][2]
    return f"{code}^{event}" if event else code


def _code(message: Message, verdict: Verdict) -> str:
    if acks.enhanced_mode(message.msh):
        return acks.commit_code(verdict.decision)
    return verdict.decision


def _ack_code(answer: bytes) -> str:
    pos = answer.find(b"MSA")
    return answer[pos + 4 : pos + 6].decode("ascii", "replace") if pos >= 0 else "AR"
