"""Assembles the identity layer: keys, protected numbers and the master patient index.

It lives at the top of the package (like ``hie.app``) because it joins the card service's
resident ID rules with the exchange, which must not import each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from card import resident_id
from hie.crypto import Keyring, keyring_path, load_keyring
from hie.exchange.mpi import MasterPatientIndex
from hie.exchange.protection import Protection
from hie.identity import Matcher, load_match_config
from hie.settings import Settings

__all__ = ["build_identity", "canonical_resident_id", "match_config_path"]

_ROOT = Path(__file__).resolve().parents[1]


def canonical_resident_id(value: str) -> str:
    """The 18-character form: legacy 15-digit numbers upgraded, ``x`` as ``X``."""
    n = resident_id.normalise(value)
    if len(n) == 15 and n.isdigit():
        try:
            return resident_id.upgrade_legacy(n)
        except ValueError:
            return n
    return n


def match_config_path(settings: Settings) -> Path:
    path = Path(settings.identity.config)
    if not path.is_absolute() and not path.exists():
        path = _ROOT / path
    return path


def build_identity(
    settings: Settings,
    *,
    clock: Callable[[], datetime],
    keys: Callable[[], Keyring] | None = None,
) -> dict[str, Any]:
    """The ``protection`` and ``mpi`` arguments of ``Exchange``."""
    ring_file = keyring_path(settings.data_dir)

    def stamp() -> object:
        try:
            return ring_file.stat().st_mtime_ns
        except OSError:
            return None

    protection = Protection(
        keys or (lambda: load_keyring(settings.data_dir)),
        canonical_resident_id=canonical_resident_id,
        stamp=None if keys is not None else stamp,
    )
    matcher = Matcher(
        load_match_config(match_config_path(settings)),
        resident_id_valid=lambda v: resident_id.is_valid(v, today=clock().date()),
        protect=lambda kind, value: protection.index(_kind(kind), value),
    )
    if not settings.identity.enabled:
        return {"protection": protection}
    mpi = MasterPatientIndex(
        matcher=matcher,
        protection=protection,
        new_id=lambda: str(uuid.uuid4()),
        clock=clock,
        max_candidates=settings.identity.max_candidates,
    )
    return {"protection": protection, "mpi": mpi}


def _kind(kind: str) -> str:
    # blocking parts: resident_id, phone, or an identifier system (kept apart by kind)
    return kind if kind in ("resident_id", "phone") else "identifier:" + kind
