"""A fast HL7 v2 reader for the hot path: delimiters from MSH, lazy splitting, escapes.

Each message is decoded to text first (by MSH-18 or the sender's default) and split
afterwards, because GBK/GB18030 trail bytes include ``|``, ``^``, ``~`` and ``\\``:
splitting raw bytes would cut Chinese characters in half.

Field numbering follows the standard: ``seg[n]`` is field n, and for MSH ``msh[1]`` is the
field separator and ``msh[2]`` the encoding characters. Values are unescaped on access;
the HL7 null ``""`` reads as empty (``Composite.is_null`` tells the two apart).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from adapters.hl7v2 import charsets


class UnreadableMessage(ValueError):
    """The message header cannot be read, so the message cannot be addressed or parsed.

    ``code`` is the HL7 table 0357 error code an ACK reports for it.
    """

    def __init__(self, reason: str, code: int = 100) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class CharsetError(ValueError):
    """The bytes do not decode in the declared (or default) character set."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""

    @property
    def encoding_characters(self) -> str:
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


STANDARD = Delimiters()
_HEADERS = ("MSH", "BHS", "FHS")


def read_delimiters(segment: str) -> Delimiters:
    """The delimiters declared by an MSH (or BHS/FHS) segment's first two fields."""
    if len(segment) < 4 or segment[:3] not in _HEADERS:
        raise UnreadableMessage("the message does not start with an MSH segment", 100)
    fs = segment[3]
    if fs.isalnum() or fs.isspace():
        raise UnreadableMessage(f"MSH-1 field separator {fs!r} is not a valid delimiter", 102)
    end = segment.find(fs, 4)
    enc = segment[4:] if end < 0 else segment[4:end]
    if len(enc) not in (4, 5):
        raise UnreadableMessage(
            f"MSH-2 encoding characters {enc!r} must be 4 characters (5 with truncation)", 102
        )
    if len(set(enc)) != len(enc) or fs in enc or any(c.isalnum() or c.isspace() for c in enc):
        raise UnreadableMessage(
            f"MSH-2 encoding characters {enc!r} must be distinct punctuation, unlike MSH-1", 102
        )
    return Delimiters(fs, enc[0], enc[1], enc[2], enc[3], enc[4] if len(enc) == 5 else "")


# -- escapes -----------------------------------------------------------------------------

_FORMATTING = {".br": "\n", ".sp": "\n", "H": "", "N": ""}


def unescape(value: str, d: Delimiters, codec: str = "ascii") -> str:
    """Resolve escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh..\\ and formatting)."""
    esc = d.escape
    if esc not in value:
        return value
    parts = value.split(esc)
    out = [parts[0]]
    i = 1
    # Sequences sit at odd positions; an unpaired trailing escape character stays literal.
    while i < len(parts):
        if i + 1 >= len(parts):
            out.append(esc + parts[i])
            break
        out.append(_resolve(parts[i], d, codec))
        out.append(parts[i + 1])
        i += 2
    return "".join(out)


def _resolve(seq: str, d: Delimiters, codec: str) -> str:
    simple = {
        "F": d.field,
        "S": d.component,
        "T": d.subcomponent,
        "R": d.repetition,
        "E": d.escape,
        "P": d.truncation,
    }
    if seq in simple:
        return simple[seq]
    if seq in _FORMATTING:
        return _FORMATTING[seq]
    head = seq[:1]
    if head == "X" and len(seq) > 1:
        try:
            data = bytes.fromhex(seq[1:])
            return data.decode("utf-8" if codec == charsets.AUTO else codec)
        except (ValueError, LookupError):
            return d.escape + seq + d.escape
    if head in ("C", "M", "Z") or seq.startswith((".sp", ".in", ".ti", ".sk", ".ce", ".fi", ".nf")):
        # Character-set switches, locally defined and formatting commands carry no text.
        return "\n" if seq.startswith(".sp") else ""
    return d.escape + seq + d.escape


def escape(value: str, d: Delimiters) -> str:
    """Escape text for an outbound field (ACK texts)."""
    out = value.replace(d.escape, f"{d.escape}E{d.escape}")
    for char, code in (
        (d.field, "F"),
        (d.component, "S"),
        (d.subcomponent, "T"),
        (d.repetition, "R"),
    ):
        out = out.replace(char, f"{d.escape}{code}{d.escape}")
    if d.truncation:
        out = out.replace(d.truncation, f"{d.escape}P{d.escape}")
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", f"{d.escape}.br{d.escape}")


# -- structure -----------------------------------------------------------------------------


class Composite:
    """One repetition of a field: components, each of subcomponents."""

    __slots__ = ("_codec", "_comps", "_d", "raw")

    def __init__(self, raw: str, d: Delimiters, codec: str) -> None:
        self.raw = raw
        self._d = d
        self._codec = codec
        self._comps: list[str] | None = None

    def _components(self) -> list[str]:
        if self._comps is None:
            self._comps = self.raw.split(self._d.component)
        return self._comps

    @property
    def is_null(self) -> bool:
        return self.raw == '""'

    def __bool__(self) -> bool:
        if not self.raw or self.raw == '""':
            return False
        return bool(self.raw.strip(self._d.component + self._d.subcomponent + " "))

    def comp_raw(self, i: int) -> str:
        comps = self._components()
        return comps[i - 1] if 0 < i <= len(comps) else ""

    def subs(self, i: int) -> list[str]:
        raw = self.comp_raw(i)
        return [self._text(s) for s in raw.split(self._d.subcomponent)]

    def sub(self, i: int, j: int) -> str:
        parts = self.comp_raw(i).split(self._d.subcomponent)
        return self._text(parts[j - 1]) if 0 < j <= len(parts) else ""

    def __getitem__(self, i: int) -> str:
        """Component ``i`` (1-based): its first subcomponent, unescaped."""
        comps = self._comps
        if comps is None:
            comps = self._comps = self.raw.split(self._d.component)
        raw = comps[i - 1] if 0 < i <= len(comps) else ""
        if not raw:
            return ""
        d = self._d
        if d.subcomponent in raw:
            raw = raw.split(d.subcomponent, 1)[0]
        if raw == '""':
            return ""
        return unescape(raw, d, self._codec) if d.escape in raw else raw

    def tail(self, start: int) -> Composite:
        """The components from ``start`` on, as a composite (XCN.2.. read as an XPN)."""
        comps = self._components()[start - 1 :]
        return Composite(self._d.component.join(comps), self._d, self._codec)

    def components(self) -> list[str]:
        return [self[i] for i in range(1, len(self._components()) + 1)]

    @property
    def text(self) -> str:
        """The whole value unescaped, delimiters kept (for plain text fields)."""
        return self._text(self.raw)

    def _text(self, raw: str) -> str:
        if raw == '""':
            return ""
        return unescape(raw, self._d, self._codec)


class Segment:
    """One segment; ``fields[n]`` is the raw (escaped) text of field n.

    Fields are split on first use: the intake looks into a few segments only.
    """

    __slots__ = ("_codec", "_d", "_fields", "line", "name", "position")

    def __init__(
        self,
        name: str,
        line: str | list[str],
        d: Delimiters,
        codec: str,
        position: int,
    ) -> None:
        self.name = name
        self._d = d
        self._codec = codec
        self.position = position
        if isinstance(line, list):
            self._fields: list[str] | None = line
            self.line = d.field.join(line)
        else:
            self._fields = None
            self.line = line

    @property
    def fields(self) -> list[str]:
        if self._fields is None:
            parts = self.line.split(self._d.field)
            if self.name in _HEADERS:
                parts.insert(1, self._d.field)
            self._fields = parts
        return self._fields

    def raw(self, n: int) -> str:
        fields = self._fields or self.fields
        return fields[n] if 0 < n < len(fields) else ""

    def reps(self, n: int) -> list[Composite]:
        raw = self.raw(n)
        if not raw:
            return []
        if self.name == "MSH" and n in (1, 2):
            return [Composite(raw, _LITERAL, self._codec)]
        return [Composite(r, self._d, self._codec) for r in raw.split(self._d.repetition) if r]

    def __getitem__(self, n: int) -> Composite:
        """The first repetition of field ``n`` (empty when absent)."""
        raw = self.raw(n)
        if self.name == "MSH" and n in (1, 2):
            return Composite(raw, _LITERAL, self._codec)
        rep = self._d.repetition
        if rep in raw:
            raw = raw.split(rep, 1)[0]
        return Composite(raw, self._d, self._codec)

    def get(self, n: int, comp: int = 1, sub: int = 1) -> str:
        if sub == 1 and not (self.name == "MSH" and n in (1, 2)):
            return self.value(n, comp)
        first = self[n]
        return first[comp] if sub == 1 else first.sub(comp, sub)

    def value(self, n: int, comp: int = 1) -> str:
        """First repetition, component ``comp``, first subcomponent, unescaped (fast path)."""
        fields = self._fields or self.fields
        raw = fields[n] if 0 < n < len(fields) else ""
        if not raw:
            return ""
        d = self._d
        if d.repetition in raw:
            raw = raw.split(d.repetition, 1)[0]
        if comp > 1 or d.component in raw:
            parts = raw.split(d.component, comp)
            raw = parts[comp - 1] if comp <= len(parts) else ""
        if d.subcomponent in raw:
            raw = raw.split(d.subcomponent, 1)[0]
        if raw == '""':
            return ""
        return unescape(raw, d, self._codec) if d.escape in raw else raw

    def has(self, n: int) -> bool:
        """Field ``n`` holds a value (not empty, not the HL7 null ``""``, not bare delimiters)."""
        fields = self._fields or self.fields
        raw = fields[n] if 0 < n < len(fields) else ""
        if not raw or raw == '""':
            return False
        d = self._d
        if d.repetition in raw and not (self.name == "MSH" and n == 2):
            raw = raw.split(d.repetition, 1)[0]
        return bool(raw.strip(d.component + d.subcomponent + " ")) and raw != '""'

    def __repr__(self) -> str:
        return f"<Segment {self.name} #{self.position}>"


# Delimiters that never occur in MSH-1/MSH-2 themselves (read those two fields verbatim).
_LITERAL = Delimiters("\x00", "\x01", "\x02", "\x03", "\x04")


class Message:
    """A decoded, split HL7 v2 message."""

    __slots__ = ("charset", "delimiters", "segments", "text")

    def __init__(self, text: str, segments: list[Segment], d: Delimiters, charset: str) -> None:
        self.text = text
        self.segments = segments
        self.delimiters = d
        self.charset = charset

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        for seg in self.segments:
            if seg.name == name:
                return seg
        return None

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    # MSH conveniences
    @property
    def sending_application(self) -> str:
        return hd_key(self.msh[3])

    @property
    def sending_facility(self) -> str:
        return hd_key(self.msh[4])

    @property
    def control_id(self) -> str:
        return self.msh.value(10)

    @property
    def message_code(self) -> str:
        return self.msh.value(9, 1)

    @property
    def trigger_event(self) -> str:
        return self.msh.value(9, 2)

    @property
    def message_type(self) -> str:
        """``CODE^EVENT`` as written (``ACK``-style single codes keep one component)."""
        code, event = self.message_code, self.trigger_event
        return f"{code}^{event}" if event else code

    @property
    def version(self) -> str:
        return self.msh.value(12)

    @property
    def processing_id(self) -> str:
        return self.msh.value(11)

    @property
    def accept_ack_type(self) -> str:
        return self.msh.value(15).strip().upper()

    @property
    def application_ack_type(self) -> str:
        return self.msh.value(16).strip().upper()


def hd_key(hd: Composite) -> str:
    """The identifying part of an HD (MSH-3/MSH-4): namespace id, else universal id."""
    return hd[1].strip() or hd[2].strip()


# -- reading ---------------------------------------------------------------------------------


def split_segments(text: str) -> list[str]:
    """Segments separated by CR; LF and CRLF are tolerated (no field holds a raw newline)."""
    if "\n" in text:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    return [s for s in text.split("\r") if s.strip()]


def parse_text(text: str, charset: str = "utf-8") -> Message:
    """Split decoded text into segments with the delimiters its MSH declares."""
    text = text.lstrip("\ufeff \t\r\n")
    lines = split_segments(text)
    if not lines:
        raise UnreadableMessage("the message is empty", 100)
    d = read_delimiters(lines[0])
    fs = d.field
    segments: list[Segment] = []
    for pos, line in enumerate(lines, start=1):
        if line[3:4] == fs or len(line) == 3:
            name = line[:3]
        else:
            name = line.split(fs, 1)[0].strip()
            line = name + line[len(line.split(fs, 1)[0]) :]
        segments.append(Segment(name, line, d, charset, pos))
    if segments[0].name != "MSH":
        raise UnreadableMessage(
            f"the message starts with {segments[0].name}, not MSH (a batch header?)", 100
        )
    return Message(text, segments, d, charset)


@dataclass(frozen=True, slots=True)
class Header:
    """What the intake needs before decoding the whole message."""

    delimiters: Delimiters
    msh: Segment
    sending_application: str
    sending_facility: str
    control_id: str
    msh18: str


def peek_header(raw: bytes) -> Header:
    """Read MSH from raw bytes without knowing the character set yet.

    An ASCII header (the usual case) reads exactly. A header with non-ASCII bytes is
    read as UTF-8 when valid, else as GB18030 (the Chinese default).
    """
    start = 0
    while start < len(raw) and raw[start] in b" \t\r\n":
        start += 1
    if raw[start : start + 3] == b"\xef\xbb\xbf":
        start += 3
    end = len(raw)
    for sep in (b"\r", b"\n"):
        pos = raw.find(sep, start)
        if 0 <= pos < end:
            end = pos
    head = raw[start:end]
    if head.isascii():
        text = head.decode("ascii")
    else:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = head.decode("gb18030", errors="replace")
    d = read_delimiters(text)
    if text[:3] != "MSH":
        raise UnreadableMessage(f"the message starts with {text[:3]}, not MSH", 100)
    msh = Segment("MSH", text, d, "utf-8", 1)
    return Header(
        delimiters=d,
        msh=msh,
        sending_application=hd_key(msh[3]),
        sending_facility=hd_key(msh[4]),
        control_id=msh.value(10),
        msh18=msh.value(18),
    )


def read_message(
    raw: bytes,
    default_charset: str | Callable[[Header], str] = "utf-8",
    header: Header | None = None,
) -> Message:
    """Decode and split one message; MSH-18 wins over the (sender's) default charset.

    Raises UnreadableMessage (no usable MSH) or CharsetError (unknown or undecodable).
    """
    header = header or peek_header(raw)
    if header.msh18:
        label = header.msh18
        where = f"MSH-18 {label!r}"
    else:
        label = default_charset(header) if callable(default_charset) else default_charset
        where = f"the sender's default character set {label!r} (MSH-18 is empty)"
    try:
        codec = charsets.codec_for(label)
    except charsets.UnknownCharset:
        raise CharsetError(f"{where} is not a supported character set", 103) from None
    if raw.isascii() and charsets.is_ascii_compatible(codec):
        text, used = raw.decode("ascii"), ("ascii" if codec == charsets.AUTO else codec)
    else:
        try:
            text, used = charsets.decode(raw, codec)
        except UnicodeDecodeError as exc:
            raise CharsetError(
                f"bytes {exc.start}-{exc.end} do not decode as {codec} ({where})", 102
            ) from None
    return parse_text(text, used)
