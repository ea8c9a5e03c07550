"""_summary and _elements on stored bytes."""

from __future__ import annotations

import orjson

from hie.search import default_registry
from hie.search.query import Summary
from hie.search.shaping import Shaper

PATIENT = {
    "resourceType": "Patient",
    "id": "p",
    "meta": {"versionId": "1", "tag": [{"system": "urn:t", "code": "x"}]},
    "text": {"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'>p</div>"},
    "name": [{"family": "张"}],
    "birthDate": "1985",
    "_birthDate": {"extension": [{"url": "urn:e", "valueString": "x"}]},
    "deceasedBoolean": False,
    "communication": [{"language": {"text": "zh"}}],
}


def shaped(summary: Summary | None, elements: tuple[str, ...] = ()) -> dict[str, object]:
    shaper = Shaper(default_registry())
    out = orjson.loads(shaper.shape(orjson.dumps(PATIENT), "Patient", summary, elements))
    assert isinstance(out, dict)
    return out


def codes(resource: dict[str, object]) -> list[object]:
    meta = resource["meta"]
    assert isinstance(meta, dict)
    return [t["code"] for t in meta["tag"]]


def test_whole_resources_are_untouched() -> None:
    content = orjson.dumps(PATIENT)
    shaper = Shaper(default_registry())
    assert shaper.shape(content, "Patient", None) is content
    assert shaper.shape(content, "Patient", Summary.FALSE) is content


def test_summary_true_keeps_summary_elements_and_tags() -> None:
    out = shaped(Summary.TRUE)
    assert set(out) == {
        "resourceType",
        "id",
        "meta",
        "name",
        "birthDate",
        "_birthDate",
        "deceasedBoolean",
    }
    assert codes(out) == ["x", "SUBSETTED"]


def test_summary_text_and_data() -> None:
    assert set(shaped(Summary.TEXT)) == {"resourceType", "id", "meta", "text"}
    data = shaped(Summary.DATA)
    assert "text" not in data
    assert data["communication"] == PATIENT["communication"]


def test_elements_with_choices_and_type_prefix() -> None:
    out = shaped(None, ("Patient.name", "deceased"))
    assert set(out) == {"resourceType", "id", "meta", "name", "deceasedBoolean"}
    again = orjson.dumps(out)
    twice = Shaper(default_registry()).shape(again, "Patient", None, ("name",))
    assert codes(orjson.loads(twice)) == ["x", "SUBSETTED"], "tagged once"
