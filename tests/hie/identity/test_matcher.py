import datetime as dt
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from hie.crypto import BlindIndex, KeySet
from hie.identity import (
    ConfigError,
    MatchConfig,
    Matcher,
    Outcome,
    PersonName,
    PersonRecord,
    load_match_config,
)

ROOT = Path(__file__).resolve().parents[3]


def with_check(first17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return (
        first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]
    )


ZHANG_WEI_ID = with_check("51070319800101123")  # male, born 1980-01-01
TWIN_ID = with_check("51070319800101125")


def zhang_wei(record_id: str = "h1:1", **changes: object) -> PersonRecord:
    base = PersonRecord(
        record_id=record_id,
        source=record_id.split(":")[0],
        names=(PersonName("张", "伟"),),
        birth_date=dt.date(1980, 1, 1),
        gender="male",
        phone="13812345678",
        address="涪城区临园路东段66号3栋2单元501",
        locality="涪城区",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_same_person_with_hanzi_name_matches(matcher: Matcher) -> None:
    c = matcher.compare(zhang_wei(), zhang_wei("h2:9", phone="+86 138 1234 5678"))
    assert c.outcome is Outcome.MATCH
    assert c.reason == "weights"
    assert c.level("name") == "exact"
    assert c.level("phone") == "exact"


@pytest.mark.parametrize("other", ["章伟", "张玮"])
def test_homophone_names_are_at_most_possible(matcher: Matcher, other: str) -> None:
    c = matcher.compare(zhang_wei(), zhang_wei("h2:9", names=(PersonName("", other),)))
    assert c.level("name") == "pinyin"
    assert c.score >= matcher.config.match_threshold  # everything else agrees...
    assert c.outcome is Outcome.POSSIBLE_MATCH  # ...but pinyin alone never auto-links
    assert c.reason == "name-not-certain"


@pytest.mark.parametrize("typed", [("ZHANG", "WEI"), ("", "ZHANGWEI"), ("Zhang", "Wei"),
                                   ("WEI", "ZHANG")])  # fmt: skip
def test_pinyin_only_record_is_at_most_possible(matcher: Matcher, typed: tuple[str, str]) -> None:
    c = matcher.compare(zhang_wei(), zhang_wei("old:1", names=(PersonName(*typed),)))
    assert c.level("name") == "pinyin"
    assert c.outcome is Outcome.POSSIBLE_MATCH


def test_surname_readings_shan_and_zeng(matcher: Matcher) -> None:
    shan = zhang_wei(names=(PersonName("单", "伟"),))
    assert (
        matcher.compare(shan, zhang_wei("o:1", names=(PersonName("SHAN", "WEI"),))).level("name")
        == "pinyin"
    )
    assert matcher.compare(shan, zhang_wei("o:2", names=(PersonName("DAN", "WEI"),))).level(
        "name"
    ) in ("pinyin_typo", "disagree")
    zeng = zhang_wei(names=(PersonName("", "曾小明"),))
    assert (
        matcher.compare(zeng, zhang_wei("o:3", names=(PersonName("ZENG", "XIAOMING"),))).level(
            "name"
        )
        == "pinyin"
    )


def test_swapped_day_and_month_still_match(matcher: Matcher) -> None:
    a = zhang_wei(birth_date=dt.date(1980, 3, 7))
    c = matcher.compare(a, zhang_wei("h2:2", birth_date=dt.date(1980, 7, 3)))
    assert c.level("birth_date") == "swapped"
    assert c.outcome is Outcome.MATCH


def test_birth_date_typo_level(matcher: Matcher) -> None:
    c = matcher.compare(zhang_wei(), zhang_wei("h2:2", birth_date=dt.date(1981, 1, 1)))
    assert c.level("birth_date") == "typo"
    c = matcher.compare(zhang_wei(), zhang_wei("h2:3", birth_date=dt.date(1975, 6, 20)))
    assert c.level("birth_date") == "disagree"


def test_resident_id_decides_even_when_the_name_is_pinyin(matcher: Matcher) -> None:
    a = zhang_wei(resident_id=ZHANG_WEI_ID)
    b = zhang_wei("old:1", names=(PersonName("ZHANG", "WEI"),), resident_id=ZHANG_WEI_ID.lower(),
                  phone=None, address="somewhere else")  # fmt: skip
    c = matcher.compare(a, b)
    assert c.outcome is Outcome.MATCH
    assert c.reason == "resident-id"


def test_different_valid_resident_ids_never_link(matcher: Matcher) -> None:
    # twins: same everything but the given name would differ; even identical records with two
    # valid ID numbers are two people
    c = matcher.compare(zhang_wei(resident_id=ZHANG_WEI_ID), zhang_wei("h2:1", resident_id=TWIN_ID))
    assert c.outcome is Outcome.NO_MATCH
    assert c.reason == "different-resident-id"
    lenient = Matcher(
        matcher.config.replace(different_resident_id="possible_match"),
        resident_id_valid=lambda rid: True,
    )
    c = lenient.compare(zhang_wei(resident_id=ZHANG_WEI_ID), zhang_wei("h2:1", resident_id=TWIN_ID))
    assert c.outcome is Outcome.POSSIBLE_MATCH


def test_invalid_resident_id_is_only_evidence(matcher: Matcher) -> None:
    typo = ZHANG_WEI_ID[:10] + "9" + ZHANG_WEI_ID[11:]
    c = matcher.compare(zhang_wei(resident_id=ZHANG_WEI_ID), zhang_wei("h2:1", resident_id=typo))
    assert c.reason == "weights"
    assert c.level("resident_id") == "typo"
    assert c.outcome is Outcome.MATCH


def test_guardian_id_on_a_child_record_is_a_conflict(matcher: Matcher) -> None:
    parent = zhang_wei(resident_id=ZHANG_WEI_ID)
    child = zhang_wei("h2:5", names=(PersonName("张", "小宝"),), birth_date=dt.date(2023, 5, 1),
                      resident_id=ZHANG_WEI_ID)  # fmt: skip
    c = matcher.compare(parent, child)
    assert c.outcome is Outcome.POSSIBLE_MATCH
    assert c.reason == "resident-id-conflict"
    # a mistyped birth date next to the right number is not a conflict
    typo = zhang_wei("h2:6", birth_date=dt.date(1980, 1, 11), resident_id=ZHANG_WEI_ID)
    assert matcher.compare(parent, typo).reason == "resident-id"


def test_card_number_decides(matcher: Matcher) -> None:
    a = zhang_wei(card_no="5107100000001234")
    b = zhang_wei("h2:1", names=(PersonName("", "ZHANGWEI"),), card_no="5107 1000 0000 1234")
    assert matcher.compare(a, b).reason == "card-number"
    assert matcher.compare(a, b).outcome is Outcome.MATCH


def test_twins_without_id_numbers_do_not_auto_link(matcher: Matcher) -> None:
    brother = zhang_wei("h2:1", names=(PersonName("张", "强"),))
    c = matcher.compare(zhang_wei(), brother)
    assert c.level("name") == "disagree"
    assert c.outcome is not Outcome.MATCH


def test_missing_values_weigh_nothing(matcher: Matcher) -> None:
    bare = zhang_wei("h2:1", phone=None, address=None, locality=None, gender=None)
    c = matcher.compare(zhang_wei(), bare)
    assert dict(c.levels)["phone"] is None
    expected = sum(
        w.weights[lvl] for w in matcher.config.comparisons if (lvl := c.level(w.key)) is not None
    )
    assert c.score == pytest.approx(expected)


def test_clusters_rank_and_a_member_with_another_id_vetoes(matcher: Matcher) -> None:
    new = zhang_wei("h9:1", resident_id=ZHANG_WEI_ID)
    clusters = {
        "E1": [zhang_wei("h1:1"), zhang_wei("h2:1", resident_id=TWIN_ID)],
        "E2": [zhang_wei("h3:1", phone=None)],
    }
    ranked = matcher.rank(new, clusters)
    assert [c.enterprise_id for c in ranked] == ["E2", "E1"]
    assert ranked[1].comparison.reason == "different-resident-id"
    decision = matcher.decide(new, clusters)
    assert decision.enterprise_id == "E2"
    assert decision.outcome is Outcome.MATCH


def test_two_matching_enterprise_patients_are_ambiguous(matcher: Matcher) -> None:
    clusters = {"E1": [zhang_wei("h1:1")], "E2": [zhang_wei("h2:1")]}
    decision = matcher.decide(zhang_wei("h3:1"), clusters)
    assert decision.outcome is Outcome.POSSIBLE_MATCH
    assert decision.reason == "ambiguous"
    assert matcher.decide(zhang_wei("h3:1"), {}).outcome is Outcome.NO_MATCH


def test_blocking_keys_join_spellings_and_protect_numbers(matcher: Matcher) -> None:
    blind = BlindIndex(KeySet.generate("i"))
    protected = Matcher(matcher.config, resident_id_valid=lambda r: True, protect=blind.value)
    hanzi = protected.blocking_keys(zhang_wei(resident_id=ZHANG_WEI_ID))
    pinyin = protected.blocking_keys(
        zhang_wei(
            "o:1",
            names=(PersonName("ZHANG", "WEI"),),
            birth_date=dt.date(1980, 1, 1),
            phone=None,
            resident_id=ZHANG_WEI_ID,
        )
    )
    assert set(hanzi) & set(pinyin)
    for key in hanzi:
        assert ZHANG_WEI_ID not in key
        assert "13812345678" not in key
    assert f"resident_id={blind.value('resident_id', ZHANG_WEI_ID)}" in hanzi
    swapped = protected.blocking_keys(zhang_wei("h2:1", birth_date=dt.date(1980, 1, 1)))
    assert "family+birth_year+birth_month_day=zhang|1980|0101" in swapped
    shan = protected.blocking_keys(zhang_wei(names=(PersonName("", "单伟"),)))
    assert "name+birth_year=shanwei|1980" in shan


def test_blocking_key_for_swapped_birth_dates_is_shared(matcher: Matcher) -> None:
    a = matcher.blocking_keys(zhang_wei(birth_date=dt.date(1980, 3, 7), phone=None))
    b = matcher.blocking_keys(zhang_wei("h2:1", names=(PersonName("张", "玮"),), phone=None,
                                        birth_date=dt.date(1980, 7, 3)))  # fmt: skip
    assert "family+birth_year+birth_month_day=zhang|1980|0307" in set(a) & set(b)


def test_shipped_config_loads() -> None:
    config = load_match_config(ROOT / "config" / "identity.toml")
    assert config.possible_threshold < config.match_threshold
    assert config.different_resident_id == "no_match"
    assert ["resident_id"] in [list(p) for p in config.blocking_passes]


def _config_text() -> str:
    return (ROOT / "config" / "identity.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('field = "phone"', 'field = "shoe_size"'), "unknown field"),
        (lambda t: t.replace("swapped = {", "swopped = {"), "unknown level 'swopped'"),
        (lambda t: t.replace("typo = { m = 0.03, u = 0.0002 }", ""), r"no m/u for .*'typo'"),
        (lambda t: t.replace("m = 0.75", "m = 1.5"), "m and u must be in"),
        (lambda t: t.replace("possible = 9.5", "possible = 99.0"), "possible must not exceed"),
        (lambda t: t.replace('different_resident_id = "no_match"', 'different_resident_id = "yes"'),
         "rules.different_resident_id"),
        (lambda t: t.replace('["card_no"]', '["shoe_size"]'), "unknown key part 'shoe_size'"),
        (lambda t: t.replace("[blocking]", "[blocking_]"), "missing or malformed setting"),
    ],
)  # fmt: skip
def test_config_errors_name_the_setting(tmp_path: Path, edit: object, message: str) -> None:
    assert callable(edit)
    text = edit(_config_text())
    assert text != _config_text()
    with pytest.raises(ConfigError, match=message):
        MatchConfig.from_mapping(tomllib.loads(text))
    path = tmp_path / "identity.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"identity\.toml"):
        load_match_config(path)
