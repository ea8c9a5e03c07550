"""Acknowledgements: original mode (AA/AE/AR) and enhanced mode (CA/CE/CR).

ACKs are written by hand: they are on the path every message takes, and hl7apy builds
about as slowly as it parses. ``tests/adapters/hl7v2/test_ack.py`` checks their structure
with hl7apy instead.

An ACK answers in the sender's own delimiters, version, processing id and character set,
addressed back to MSH-3/MSH-4, with MSA-2 echoing MSH-10. Each problem becomes an ERR
segment: ERR-2 location, ERR-3 the HL7 table 0357 code, ERR-4 severity, ERR-8 the text.
Versions before 2.5 had only ERR-1 (code and location) and MSA-3 (text); those are filled
in as well for them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from adapters.hl7v2 import charsets
from adapters.hl7v2.message import STANDARD, Delimiters, Segment, escape

AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]

ERROR_NAMES: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    104: "Value too long",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}
"""HL7 table 0357, message error condition codes."""

_ERR_TEXT_MAX = 250


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason an ACK is not a plain AA, with where it was found."""

    code: int
    text: str
    severity: Literal["E", "W", "I", "F"] = "E"
    segment: str = ""
    sequence: int = 1
    field: int = 0
    component: int = 0

    @property
    def location(self) -> str:
        """``PID-7``, ``PID-3.1``, ``OBX(2)-3`` or ``MSH``; empty when the problem has no place."""
        if not self.segment:
            return ""
        where = self.segment if self.sequence == 1 else f"{self.segment}({self.sequence})"
        if self.field:
            where += f"-{self.field}"
            if self.component:
                where += f".{self.component}"
        return where

    def describe(self) -> str:
        loc = self.location
        if not loc or self.text.startswith(loc):
            return self.text
        return f"{loc}: {self.text}"


def commit_code(app_code: str) -> AckCode:
    """The enhanced-mode commit code matching an application-level verdict."""
    return {"AA": "CA", "AE": "CE"}.get(app_code, "CR")  # type: ignore[return-value]


def enhanced_mode(msh: Segment) -> bool:
    """MSH-15 or MSH-16 present asks for enhanced acknowledgement."""
    return bool(msh.value(15).strip() or msh.value(16).strip())


def wants_application_ack(msh: Segment, code: str) -> bool:
    """Whether MSH-16 (AL/NE/ER/SU) asks for an application ACK with this code."""
    mode = msh.value(16).strip().upper()
    if mode == "AL":
        return True
    if mode == "ER":
        return code != "AA"
    if mode == "SU":
        return code == "AA"
    return False


def _old_version(version: str) -> bool:
    return version[:3] in ("2.1", "2.2", "2.3", "2.4")


class AckBuilder:
    """Builds ACK messages; owns the ACK control-id sequence."""

    def __init__(
        self,
        application: str = "HIE",
        facility: str = "",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.application = application
        self.facility = facility
        local = datetime.now().astimezone().tzinfo
        self._clock = clock or (lambda: datetime.now(local))
        self._counter = itertools.count(1)
        self._lock = threading.Lock()
        self._prefix = _base36(int(time.time()))[-6:]

    def next_id(self) -> str:
        with self._lock:
            n = next(self._counter)
        return f"H{self._prefix}{_base36(n).rjust(6, '0')}"

    def now(self) -> str:
        return self._clock().strftime("%Y%m%d%H%M%S%z")

    def ack(
        self,
        msh: Segment,
        d: Delimiters,
        code: AckCode,
        problems: Sequence[Problem] = (),
        codec: str = "ascii",
    ) -> bytes:
        """An ACK to the message whose MSH is ``msh``, encoded in ``codec``."""
        version = msh.raw(12) or "2.5"
        event = msh.value(9, 2)
        v = msh.value(12)
        cs = d.component
        if not event:
            structure = "ACK"
        elif v in ("2.1", "2.2", "2.3") or v.startswith(("2.1.", "2.2.")):
            structure = f"ACK{cs}{event}"
        else:
            structure = f"ACK{cs}{event}{cs}ACK"
        header = [
            "MSH",
            d.encoding_characters,
            msh.raw(5) or escape(self.application, d),
            msh.raw(6) or escape(self.facility, d),
            msh.raw(3),
            msh.raw(4),
            self.now(),
            "",
            structure,
            self.next_id(),
            msh.raw(11) or "P",
            version,
        ]
        if msh.raw(18):
            header += ["", "", "", "", "", msh.raw(18)]
        return self._encode(header, msh.raw(10), code, problems, d, v, codec)

    def minimal(self, code: AckCode, problems: Sequence[Problem], control_id: str = "") -> bytes:
        """An ACK to a message whose MSH cannot be read: standard delimiters, version 2.5."""
        d = STANDARD
        header = [
            "MSH",
            d.encoding_characters,
            escape(self.application, d),
            escape(self.facility, d),
            "",
            "",
            self.now(),
            "",
            "ACK^^ACK",
            self.next_id(),
            "P",
            "2.5",
        ]
        return self._encode(header, escape(control_id, d), code, problems, d, "2.5", "ascii")

    def _encode(
        self,
        header: list[str],
        control_id: str,
        code: AckCode,
        problems: Sequence[Problem],
        d: Delimiters,
        version: str,
        codec: str,
    ) -> bytes:
        fs, cs, ss = d.field, d.component, d.subcomponent
        old = _old_version(version)
        msa = ["MSA", code, control_id]
        if old and problems:
            msa.append(escape(_clip("; ".join(p.describe() for p in problems)), d))
        segments = [fs.join(header), fs.join(msa)]
        for p in problems:
            name = ERROR_NAMES.get(p.code, "Application internal error")
            err1 = ""
            if old:
                parts = [p.segment, str(p.sequence) if p.segment else "", str(p.field or "")]
                err1 = cs.join([*parts, f"{p.code}{ss}{escape(name, d)}{ss}HL70357"])
            erl = ""
            if p.segment:
                erl_parts = [p.segment, str(p.sequence)]
                if p.field:
                    erl_parts += [str(p.field), "1"]
                    if p.component:
                        erl_parts.append(str(p.component))
                erl = cs.join(erl_parts)
            err = [
                "ERR",
                err1,
                erl,
                f"{p.code}{cs}{escape(name, d)}{cs}HL70357",
                p.severity,
                "",
                "",
                "",
                escape(_clip(p.describe()), d),
            ]
            segments.append(fs.join(err))
        return charsets.encode("\r".join(segments) + "\r", codec)


def _clip(text: str) -> str:
    return text if len(text) <= _ERR_TEXT_MAX else text[: _ERR_TEXT_MAX - 1] + "…"


def _base36(n: int) -> str:
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def guess_control_id(raw: bytes) -> str:
    """MSH-10 of a message whose header failed to parse, when it can still be found.

    Only for a header starting ``MSH`` plus a punctuation field separator, and only a
    printable value; otherwise empty (MSA-2 then stays empty: nothing can be echoed).
    """
    line = raw.lstrip()[:2048].split(b"\r", 1)[0].split(b"\n", 1)[0]
    if len(line) < 4 or line[:3] != b"MSH" or chr(line[3]).isalnum():
        return ""
    fields = line.split(line[3:4])
    if len(fields) <= 9:
        return ""
    value = fields[9].decode("ascii", "replace")
    return value if value.isprintable() and len(value) <= 199 else ""
