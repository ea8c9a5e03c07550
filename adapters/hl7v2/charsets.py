"""Character sets named by MSH-18 (HL7 table 0211) and the Python codecs that decode them.

Chinese senders often write ``GBK``, ``GB2312`` or ``GB18030`` instead of the table's
``GB 18030-2000``; all three decode with ``gb18030``, a superset of both older sets, so a
GB2312 label on GBK bytes (a common mislabel) still decodes correctly.
"""

from __future__ import annotations

import codecs
import re

_CODECS: dict[str, str] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "US-ASCII": "ascii",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030",
    "GB18030-2000": "gb18030",
    "GB 18030": "gb18030",
    "GB18030": "gb18030",
    "GB 18030-2005": "gb18030",
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "GB 2312": "gb18030",
    "GB2312-80": "gb18030",
    "BIG-5": "big5",
    "BIG5": "big5",
    "KS X 1001": "euc_kr",
    "ISO IR14": "iso2022_jp",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "JAS2020": "iso2022_jp",
    "JIS X 0202": "iso2022_jp",
    "LATIN1": "iso8859-1",
    "ISO-8859-1": "iso8859-1",
}
for _n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15):
    _CODECS[f"8859/{_n}"] = f"iso8859-{_n}"
    _CODECS[f"ISO 8859/{_n}"] = f"iso8859-{_n}"
    _CODECS[f"ISO-8859-{_n}"] = f"iso8859-{_n}"

AUTO = "AUTO"
"""A sender default meaning: UTF-8 when the bytes are valid UTF-8, otherwise GB18030."""

_SPACES = re.compile(r"[\s_]+")


class UnknownCharset(ValueError):
    """An MSH-18 value (or sender default) that names no supported character set."""


def normalise(name: str) -> str:
    return _SPACES.sub(" ", name.strip()).upper()


def codec_for(name: str) -> str:
    """The Python codec for an MSH-18 value; raises UnknownCharset."""
    key = normalise(name)
    if key == AUTO:
        return AUTO
    try:
        return _CODECS[key]
    except KeyError:
        # A sender may configure a plain Python codec name (e.g. "cp936").
        try:
            return codecs.lookup(name.strip()).name
        except LookupError:
            raise UnknownCharset(name) from None


def is_ascii_compatible(codec: str) -> bool:
    """Whether the delimiters and MSH can be read from the raw bytes of this codec."""
    return codec not in ("utf-16", "utf-32")


def decode(raw: bytes, codec: str) -> tuple[str, str]:
    """Decode ``raw`` strictly; returns (text, codec actually used).

    Raises UnicodeDecodeError: a wrong value would be worse than a refused message.
    """
    if codec == AUTO:
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return raw.decode("gb18030"), "gb18030"
    return raw.decode(codec), codec


def encode(text: str, codec: str) -> bytes:
    """Encode an outbound message (an ACK) in the sender's character set."""
    if codec in (AUTO, "utf-16", "utf-32"):
        codec = "utf-8"
    return text.encode(codec, errors="replace")
