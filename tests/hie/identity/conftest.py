import datetime as dt
from pathlib import Path

import pytest

from card.resident_id import is_valid
from hie.identity import Matcher, load_match_config

ROOT = Path(__file__).resolve().parents[3]
TODAY = dt.date(2026, 11, 28)


@pytest.fixture(scope="session")
def matcher() -> Matcher:
    config = load_match_config(ROOT / "config" / "identity.toml")
    return Matcher(config, resident_id_valid=lambda rid: is_valid(rid, today=TODAY))
