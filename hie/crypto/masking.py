"""Masks for showing identifiers to callers without the scope to see them in full."""

from __future__ import annotations

from hie.crypto import normalise

__all__ = ["mask_name", "mask_phone", "mask_resident_id"]


def mask_resident_id(value: str) -> str:
    """``510703********1234``: the region and the last four stay, the birth date goes."""
    n = normalise.identifier(value)
    if len(n) <= 10:
        return "*" * len(n)
    return n[:6] + "*" * (len(n) - 10) + n[-4:]


def mask_phone(value: str) -> str:
    """Mobile ``138****5678`` (the usual Chinese form); other numbers keep the last four."""
    n = normalise.phone(value)
    if len(n) == 11 and n.startswith("1"):
        return n[:3] + "****" + n[-4:]
    if len(n) <= 4:
        return "*" * len(n)
    return "*" * (len(n) - 4) + n[-4:]


def mask_name(value: str) -> str:
    """``张**`` / ``Z*** W**``: the first character of each part stays."""
    parts = value.split()
    if len(parts) > 1:
        return " ".join(p[0] + "*" * (len(p) - 1) for p in parts)
    v = value.strip()
    return v[:1] + "*" * max(len(v) - 1, 0)
