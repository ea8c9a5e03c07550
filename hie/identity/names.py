"""Personal names in Hanzi, pinyin and Latin script, and how they are compared.

A Chinese name is compared twice: as Hanzi, and as toneless pinyin. Pinyin comes from
``pypinyin`` with every reading of each character (heteronyms), except that the surname
is read with its *surname* reading from :data:`SURNAME_READINGS` (单 is Shan, not Dan;
曾 is Zeng, not Ceng). Hospital systems without Chinese input type the pinyin, usually in
capitals, with or without a space, with ü as V, U or YU; :func:`latin_key` folds all of those.

Equal pinyin does not mean the same name: 张伟, 章伟 and 张玮 all read "zhang wei".
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass

from pypinyin import Style, pinyin

__all__ = [
    "COMPOUND_SURNAMES",
    "SURNAME_READINGS",
    "NameForms",
    "has_hanzi",
    "latin_key",
    "name_forms",
    "soundex",
    "split_hanzi_name",
]

# Surnames whose reading differs from the common reading of the character (first = usual).
SURNAME_READINGS: dict[str, tuple[str, ...]] = {
    "单": ("shan",),
    "曾": ("zeng",),
    "解": ("xie",),
    "仇": ("qiu",),
    "查": ("zha",),
    "朴": ("piao",),
    "区": ("ou",),
    "盖": ("ge", "gai"),
    "乐": ("yue", "le"),
    "翟": ("zhai",),
    "缪": ("miao",),
    "覃": ("qin", "tan"),
    "秘": ("bi",),
    "种": ("chong",),
    "繁": ("po",),
    "员": ("yun",),
    "冼": ("xian",),
    "洗": ("xian",),
    "沈": ("shen",),
    "尉": ("wei",),
    "召": ("shao",),
    "郇": ("xun",),
    "句": ("gou",),
    "阚": ("kan",),
    "宓": ("mi", "fu"),
    "长孙": ("zhangsun",),
    "尉迟": ("yuchi",),
    "万俟": ("moqi",),
    "单于": ("chanyu",),
    "澹台": ("tantai",),
}

COMPOUND_SURNAMES = frozenset(
    {
        "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
        "宇文", "司徒", "夏侯", "令狐", "端木", "轩辕", "万俟", "单于", "澹台", "呼延",
        "南宫", "独孤", "百里", "西门", "闻人", "赫连", "申屠", "太史", "钟离", "公羊",
    }
)  # fmt: skip

_MAX_READINGS = 32
_LATIN_DROP = re.compile(r"[^a-z]")


def has_hanzi(text: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text)


def split_hanzi_name(full: str) -> tuple[str, str]:
    """(surname, given name) of a Hanzi full name, minding compound surnames."""
    name = _clean_hanzi(full)
    if len(name) > 2 and name[:2] in COMPOUND_SURNAMES:
        return name[:2], name[2:]
    return name[:1], name[1:]


def _clean_hanzi(text: str) -> str:
    # drop spaces and the middle dots of minority names (阿依古丽·买买提)
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if has_hanzi(ch))


def latin_key(text: str) -> str:
    """Lower-case a-z only: tone marks, spaces, hyphens and apostrophes go; ü/v/yu -> u."""
    decomposed = unicodedata.normalize("NFKD", text.replace("ü", "v").replace("Ü", "V"))
    s = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    s = s.replace("u:", "v")
    s = re.sub(r"(?<=[ln])yu", "v", s)
    s = _LATIN_DROP.sub("", s)
    return s.replace("v", "u")


@functools.lru_cache(maxsize=65536)
def _readings(hanzi: str, is_surname: bool) -> tuple[str, ...]:
    """Every toneless pinyin reading of a Hanzi string, usual reading first."""
    if not hanzi:
        return ("",)
    if is_surname and hanzi in SURNAME_READINGS:
        return SURNAME_READINGS[hanzi]
    per_char = pinyin(hanzi, style=Style.NORMAL, heteronym=True, errors="ignore")
    options = [[latin_key(r) for r in readings] for readings in per_char]
    out: list[str] = []
    for combo in itertools.islice(itertools.product(*options), _MAX_READINGS):
        joined = "".join(combo)
        if joined not in out:
            out.append(joined)
    # pypinyin's phrase-aware reading is the most likely one: put it first
    usual = "".join(latin_key(r[0]) for r in pinyin(hanzi, style=Style.NORMAL, errors="ignore"))
    if usual in out:
        out.remove(usual)
    return (usual, *out)


@dataclass(frozen=True, slots=True)
class NameForms:
    """Everything a comparison needs about one name, computed once."""

    hanzi: str  # full Hanzi name, "" if none
    family_hanzi: str
    given_hanzi: str
    family_pinyin: tuple[str, ...]  # readings, usual first; from Hanzi or the Latin form
    given_pinyin: tuple[str, ...]
    full_pinyin: frozenset[str]  # family+given readings, and given+family for Latin input
    latin: str  # latin_key of family+given as written in Latin ("" if Hanzi)

    @property
    def primary_pinyin(self) -> str:
        return self.family_pinyin[0] + self.given_pinyin[0]


@functools.lru_cache(maxsize=131072)
def name_forms(family: str, given: str) -> NameForms:
    """Forms of a name given as (family, given); either script, either part may be empty.

    A Hanzi full name in ``given`` alone (family empty) is split at its surname.
    """
    text = family + given
    if has_hanzi(text):
        if family:
            fam, giv = _clean_hanzi(family), _clean_hanzi(given)
        else:
            fam, giv = split_hanzi_name(given)
        fam_py = _readings(fam, True)
        giv_py = _readings(giv, False)
        full = frozenset(f + g for f in fam_py for g in giv_py)
        return NameForms(fam + giv, fam, giv, fam_py, giv_py, full, "")
    fam_l, giv_l = latin_key(family), latin_key(given)
    full = frozenset({fam_l + giv_l, giv_l + fam_l})
    return NameForms("", "", "", (fam_l,), (giv_l,), full, fam_l + giv_l)


_SOUNDEX = str.maketrans("bfpvcgjkqsxzdtlmnr", "111122222222334556")


def soundex(word: str) -> str:
    """American Soundex of a Latin word (for blocking Latin-script names)."""
    s = latin_key(word)
    if not s:
        return ""
    codes = s.translate(_SOUNDEX)
    out = [s[0].upper()]
    prev = codes[0]
    for ch, code in zip(s[1:], codes[1:], strict=True):
        if code.isdigit() and code != prev:
            out.append(code)
        if ch not in "hw":
            prev = code
    return "".join(out)[:4].ljust(4, "0")
