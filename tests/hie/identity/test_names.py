import pytest

from hie.identity.names import latin_key, name_forms, soundex, split_hanzi_name


@pytest.mark.parametrize(
    ("full", "parts"),
    [("张伟", ("张", "伟")), ("欧阳娜娜", ("欧阳", "娜娜")), ("司马光", ("司马", "光")),
     ("阿依古丽·买买提", ("阿", "依古丽买买提")), ("王", ("王", ""))],
)  # fmt: skip
def test_split_hanzi_name(full: str, parts: tuple[str, str]) -> None:
    assert split_hanzi_name(full) == parts


def test_surnames_use_their_surname_reading() -> None:
    assert name_forms("单", "伟").family_pinyin[0] == "shan"
    assert name_forms("曾", "国藩").family_pinyin[0] == "zeng"
    assert name_forms("", "解放").family_pinyin[0] == "xie"
    assert "shanwei" in name_forms("", "单伟").full_pinyin
    assert "danwei" not in name_forms("", "单伟").full_pinyin


def test_given_names_keep_every_reading() -> None:
    # 曾 in a given name is read ceng or zeng; both are kept for comparison
    assert {"wangceng", "wangzeng"} <= name_forms("王", "曾").full_pinyin


def test_homophones_share_pinyin_but_not_hanzi() -> None:
    forms = [name_forms("", n) for n in ("张伟", "章伟", "张玮")]
    assert len({f.hanzi for f in forms}) == 3
    assert all("zhangwei" in f.full_pinyin for f in forms)


@pytest.mark.parametrize(
    "spelling", ["LÜ XIAO", "LV XIAO", "Lyu Xiao", "lu: xiao", "Lǚ Xiǎo", "LU-XIAO", "LU XIAO"]
)
def test_latin_spellings_fold_to_one_key(spelling: str) -> None:
    assert latin_key(spelling) == "luxiao"


def test_latin_name_forms_include_both_orders() -> None:
    forms = name_forms("ZHANG", "WEI")
    assert forms.full_pinyin == {"zhangwei", "weizhang"}
    assert forms.latin == "zhangwei"
    assert forms.hanzi == ""


@pytest.mark.parametrize(
    ("word", "code"),
    [("Robert", "R163"), ("Rupert", "R163"), ("Ashcraft", "A261"), ("Tymczak", "T522"),
     ("Pfister", "P236"), ("Lee", "L000"), ("", "")],
)  # fmt: skip
def test_soundex(word: str, code: str) -> None:
    assert soundex(word) == code
