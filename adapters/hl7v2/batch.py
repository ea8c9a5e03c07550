"""Batch files: FHS/BHS ... BTS/FTS envelopes, or messages one after another.

Splitting works on bytes, at segment boundaries (CR, LF or CRLF): CR and LF never occur
inside GBK/GB18030 or UTF-8 multi-byte characters, so each message keeps its exact bytes
for the inbox. MLLP framing bytes left in dumped files are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_LINES = re.compile(rb"\r\n|\r|\n")
_ENVELOPE = (b"FHS", b"BHS", b"BTS", b"FTS")


@dataclass
class BatchContent:
    messages: list[bytes] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Envelope problems: stray segments outside any message, count mismatches."""


def split_batch(data: bytes) -> BatchContent:
    out = BatchContent()
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    current: list[bytes] | None = None
    in_batch = 0
    declared: list[tuple[int, int]] = []  # (BTS-1 count, messages seen in that batch)
    batch_start = 0
    for number, line in enumerate(_LINES.split(data), start=1):
        if not line.strip():
            continue
        head = line.lstrip()[:3]
        if head == b"MSH":
            if current:
                out.messages.append(b"\r".join(current) + b"\r")
            current = [line.lstrip()]
        elif head in _ENVELOPE:
            if current:
                out.messages.append(b"\r".join(current) + b"\r")
                current = None
            if head == b"BHS":
                in_batch += 1
                batch_start = len(out.messages)
            elif head == b"BTS":
                count = line.split(line[3:4])[1] if len(line) > 4 else b""
                if count.strip().isdigit():
                    declared.append((int(count), len(out.messages) - batch_start))
        elif current is not None:
            current.append(line)
        else:
            out.problems.append(
                f"line {number}: segment {line[:3].decode('ascii', 'replace')} is outside any"
                " message (no MSH before it)"
            )
    if current:
        out.messages.append(b"\r".join(current) + b"\r")
    for expected, seen in declared:
        if expected != seen:
            out.problems.append(f"BTS-1 declares {expected} messages, the batch holds {seen}")
    return out
