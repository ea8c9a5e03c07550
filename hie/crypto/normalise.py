"""The canonical forms of identifiers and phone numbers, before indexing or comparing.

The same person's number must always give the same blind index, so every writer and every
lookup normalises through here.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["identifier", "phone"]

_SEPARATORS = re.compile(r"[\s\-./()]")
_NON_DIGITS = re.compile(r"[^0-9]")


def identifier(value: str) -> str:
    """NFKC (full-width to ASCII), no spaces or hyphens, upper case (``x`` -> ``X``)."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).upper()


def phone(value: str) -> str:
    """Digits only, without China's country code: ``+86 138-1234-5678`` -> ``13812345678``."""
    digits = _NON_DIGITS.sub("", unicodedata.normalize("NFKC", value))
    for prefix in ("0086", "86"):
        rest = digits[len(prefix) :]
        # strip the country code only where what remains is a whole Chinese number
        if digits.startswith(prefix) and (
            (len(rest) == 11 and rest.startswith("1")) or (len(rest) >= 10 and rest[0] != "1")
        ):
            return rest if rest.startswith("1") else "0" + rest.lstrip("0")
    return digits
