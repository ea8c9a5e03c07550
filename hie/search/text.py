"""String normalisation for string search: case-insensitive and accent-insensitive.

``normalize("Renée")`` and ``normalize("RENEE")`` are both ``"renee"``. Text is NFKD
decomposed, combining marks are dropped and the result is case-folded. Chinese text
keeps its characters (NFKD only folds compatibility forms such as full-width Latin
letters, U+FF21 to ``a``), so ``张三`` matches ``张三``.
"""

from __future__ import annotations

import unicodedata


def normalize(text: str) -> str:
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return kept.casefold()


def is_cjk(text: str) -> bool:
    """Whether ``text`` contains CJK ideographs (names written without spaces)."""
    return any(
        "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"
        for ch in text
    )
