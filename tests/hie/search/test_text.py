from __future__ import annotations

import pytest

from hie.search.text import is_cjk, normalize


@pytest.mark.parametrize(
    ("text", "norm"),
    [
        ("Smith", "smith"),
        ("Renée", "renee"),
        ("ÅNGSTRÖM", "angstrom"),
        ("Straße", "strasse"),
        ("张三", "张三"),
        ("陳加玲", "陳加玲"),
        ("\uff21\uff22", "ab"),  # full-width Latin
        ("Zoë 张", "zoe 张"),
    ],
)
def test_normalize(text: str, norm: str) -> None:
    assert normalize(text) == norm


def test_is_cjk() -> None:
    assert is_cjk("张")
    assert not is_cjk("Zhang")
