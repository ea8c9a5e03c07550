"""terminology.valuesets_build: expanding value sets from CodeSystems and ValueSets."""

from __future__ import annotations

from typing import Any

from terminology.valuesets_build import ValueSetExpander, expand_all

SYSTEM = "http://example.org/cs"


def _cs(url: str, concepts: list[dict[str, Any]], content: str = "complete") -> dict[str, Any]:
    return {"resourceType": "CodeSystem", "url": url, "content": content, "concept": concepts}


def _vs(url: str, include: list[dict[str, Any]], **compose: Any) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "compose": {"include": include, **compose}}


TREE = _cs(
    SYSTEM,
    [
        {"code": "a", "concept": [{"code": "a1", "concept": [{"code": "a11"}]}, {"code": "a2"}]},
        {"code": "b"},
    ],
)


def _expand(*resources: dict[str, Any], url: str = "http://x/vs") -> frozenset[str] | None:
    return ValueSetExpander([TREE, *resources]).expand(url).codes


def test_whole_code_system_includes_nested_concepts() -> None:
    assert _expand(_vs("http://x/vs", [{"system": SYSTEM}])) == {"a", "a1", "a11", "a2", "b"}


def test_listed_concepts() -> None:
    vs = _vs("http://x/vs", [{"system": "http://other", "concept": [{"code": "x"}, {"code": "y"}]}])
    assert _expand(vs) == {"x", "y"}


def test_included_value_sets_and_versions() -> None:
    inner = _vs("http://x/inner", [{"system": SYSTEM, "concept": [{"code": "b"}]}])
    outer = _vs("http://x/vs", [{"valueSet": ["http://x/inner|4.0.1"]}])
    assert _expand(inner, outer) == {"b"}
    assert ValueSetExpander([TREE, inner, outer]).expand("http://x/vs|4.0.1").url == "http://x/vs"


def test_excludes() -> None:
    vs = _vs(
        "http://x/vs",
        [{"system": SYSTEM}],
        exclude=[{"system": SYSTEM, "concept": [{"code": "b"}]}],
    )
    assert _expand(vs) == {"a", "a1", "a11", "a2"}


def test_is_a_and_descendent_of_filters() -> None:
    def flt(op: str) -> dict[str, Any]:
        return _vs(
            "http://x/vs",
            [{"system": SYSTEM, "filter": [{"property": "concept", "op": op, "value": "a1"}]}],
        )

    assert _expand(flt("is-a")) == {"a1", "a11"}
    assert _expand(flt("descendent-of")) == {"a11"}
    assert _expand(flt("regex")) is None


def test_what_cannot_be_expanded_says_why() -> None:
    expander = ValueSetExpander(
        [
            TREE,
            _cs("http://frag", [{"code": "f"}], content="fragment"),
            _vs("http://x/external", [{"system": "urn:ietf:bcp:13"}]),
            _vs("http://x/fragment", [{"system": "http://frag"}]),
            _vs("http://x/loop", [{"valueSet": ["http://x/loop"]}]),
        ]
    )
    reasons = {
        url: expander.expand(url).reason
        for url in ("http://x/external", "http://x/fragment", "http://x/loop", "http://x/absent")
    }
    assert "urn:ietf:bcp:13 is not in the definitions" in str(reasons["http://x/external"])
    assert "fragment" in str(reasons["http://x/fragment"])
    assert "includes itself" in str(reasons["http://x/loop"])
    assert "not in the definitions" in str(reasons["http://x/absent"])


def test_expand_all_document() -> None:
    expander = ValueSetExpander(
        [TREE, _vs("http://x/vs", [{"system": SYSTEM}]), _vs("http://x/ext", [{"system": "urn:x"}])]
    )
    document = expand_all(expander, ["http://x/vs|1", "http://x/ext"])
    assert document == {
        "http://x/ext": {
            "enforceable": False,
            "reason": "code system urn:x is not in the definitions",
        },
        "http://x/vs": {"codes": ["a", "a1", "a11", "a2", "b"]},
    }
