"""The query parser on every parameter type, modifier and prefix, and on malformed input."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hie.errors import InvalidSearch
from hie.search import QueryParser
from hie.search.definitions import ParamType
from hie.search.query import (
    ChainClause,
    CompositeValue,
    DateValue,
    HasClause,
    IgnoredKind,
    MissingValue,
    Modifier,
    NumberValue,
    OfTypeValue,
    ParamClause,
    Prefix,
    QuantityValue,
    ReferenceValue,
    StringValue,
    Summary,
    TextValue,
    TokenValue,
    Total,
    UriValue,
)

LOCAL_BASE = "https://hie.example.cn/fhir"


def one(parser: QueryParser, rtype: str, name: str, value: str) -> ParamClause:
    q = parser.parse(rtype, [(name, value)])
    assert q.ignored == ()
    assert len(q.clauses) == 1
    clause = q.clauses[0]
    assert isinstance(clause, ParamClause)
    return clause


def invalid(parser: QueryParser, rtype: str, name: str, value: str) -> InvalidSearch:
    with pytest.raises(InvalidSearch) as info:
        parser.parse(rtype, [(name, value)])
    assert info.value.status == 400
    return info.value


# -- strings --------------------------------------------------------------------------


def test_string_default_exact_contains(parser: QueryParser) -> None:
    c = one(parser, "Patient", "name", "Renée")
    assert c.values == (StringValue("Renée", "renee"),)
    assert c.modifier is None
    assert one(parser, "Patient", "name:exact", "张三").modifier is Modifier.EXACT
    assert one(parser, "Patient", "family:contains", "ang").modifier is Modifier.CONTAINS


def test_string_or_and_escapes(parser: QueryParser) -> None:
    c = one(parser, "Patient", "name", r"张三,李四,a\,b")
    assert [v.text for v in c.values] == ["张三", "李四", "a,b"]  # type: ignore[union-attr]
    q = parser.parse("Patient", [("name", "zhang"), ("name", "san")])
    assert len(q.clauses) == 2  # repeated = AND


def test_missing(parser: QueryParser) -> None:
    assert one(parser, "Patient", "birthdate:missing", "true").values == (MissingValue(True),)
    assert one(parser, "Patient", "name:missing", "false").values == (MissingValue(False),)
    err = invalid(parser, "Patient", "name:missing", "yes")
    assert "name:missing" in err.message


# -- tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("male", TokenValue(None, "male", match_system=False)),
        ("http://loinc.org|1234-5", TokenValue("http://loinc.org", "1234-5", match_system=True)),
        ("|1234-5", TokenValue(None, "1234-5", match_system=True)),
        ("http://loinc.org|", TokenValue("http://loinc.org", None, match_system=True)),
        (r"urn:x|a\|b", TokenValue("urn:x", "a|b", match_system=True)),
    ],
)
def test_token_forms(parser: QueryParser, value: str, expected: TokenValue) -> None:
    assert one(parser, "Observation", "code", value).values == (expected,)


def test_token_modifiers(parser: QueryParser) -> None:
    assert one(parser, "Patient", "gender:not", "male").modifier is Modifier.NOT
    c = one(parser, "Observation", "code:text", "Blood Pressure")
    assert c.values == (TextValue("blood pressure"),)
    c = one(
        parser,
        "Patient",
        "identifier:of-type",
        "http://terminology.hl7.org/CodeSystem/v2-0203|MR|8862168",
    )
    assert c.values == (
        OfTypeValue("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "8862168"),
    )  # fmt: skip
    invalid(parser, "Patient", "identifier:of-type", "MR|123")
    invalid(parser, "Observation", "code", "a|b|c")
    invalid(parser, "Observation", "code", "|")


def test_token_unsupported_modifiers_warn(parser: QueryParser) -> None:
    q = parser.parse("Observation", [("code:in", "http://example.org/vs")])
    assert q.clauses == ()
    assert [(i.name, i.kind) for i in q.ignored] == [("code:in", IgnoredKind.UNSUPPORTED)]
    with pytest.raises(InvalidSearch, match="code:in"):
        parser.parse("Observation", [("code:in", "x")], strict=True)


def test_unknown_modifier_is_an_error(parser: QueryParser) -> None:
    err = invalid(parser, "Observation", "code:exact", "x")
    assert "code:exact" in err.message
    assert "unknown modifier" in err.message
    assert err.outcome()["issue"][0]["code"] == "invalid"
    invalid(parser, "Patient", "birthdate:exact", "2000")
    invalid(parser, "Patient", "name:not", "x")


# -- dates ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
def test_date_prefixes(parser: QueryParser, prefix: str) -> None:
    c = one(parser, "Observation", "date", f"{prefix}2013-01-14")
    (v,) = c.values
    assert isinstance(v, DateValue)
    assert v.prefix is Prefix(prefix)
    assert v.text == "2013-01-14"


@pytest.mark.parametrize(
    ("text", "span_seconds"),
    [
        ("2013", 365 * 86400),
        ("2012", 366 * 86400),
        ("2013-02", 28 * 86400),
        ("2013-01-14", 86400),
        ("2013-01-14T10:00", 60),
        ("2013-01-14T10:00:00Z", 1),
        ("2013-01-14T10:00:00+08:00", 1),
    ],
)
def test_date_precision(parser: QueryParser, text: str, span_seconds: int) -> None:
    (v,) = one(parser, "Patient", "birthdate", text).values
    assert isinstance(v, DateValue)
    assert v.prefix is Prefix.EQ
    assert v.range.high - v.range.low + 1 == span_seconds * 1_000_000


@pytest.mark.parametrize(
    "value", ["xx2013", "2013-13", "2013-02-30", "13-01-01", "2013-01-01T25:00", "2013/01/01", "ge"]
)
def test_bad_dates(parser: QueryParser, value: str) -> None:
    err = invalid(parser, "Observation", "date", value)
    assert "'date'" in err.message


# -- numbers and quantities ---------------------------------------------------------------


def test_number(parser: QueryParser) -> None:
    (v,) = one(parser, "RiskAssessment", "probability", "gt0.8").values
    assert v == NumberValue(Prefix.GT, Decimal("0.8"))
    (v,) = one(parser, "RiskAssessment", "probability", "1e2").values
    assert v == NumberValue(Prefix.EQ, Decimal("1e2"))
    invalid(parser, "RiskAssessment", "probability", "zz5")
    invalid(parser, "RiskAssessment", "probability", "five")
    invalid(parser, "RiskAssessment", "probability", "NaN")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5.4", QuantityValue(Prefix.EQ, Decimal("5.4"), None, None)),
        ("le5.4|urn:u|mg", QuantityValue(Prefix.LE, Decimal("5.4"), "urn:u", "mg")),
        ("ap5.4||mg", QuantityValue(Prefix.AP, Decimal("5.4"), None, "mg")),
    ],
)  # fmt: skip
def test_quantity(parser: QueryParser, value: str, expected: QuantityValue) -> None:
    assert one(parser, "Observation", "value-quantity", value).values == (expected,)


@pytest.mark.parametrize("value", ["abc", "5.4|a|b|c", "5.4|http://unitsofmeasure.org", "|mg"])
def test_bad_quantity(parser: QueryParser, value: str) -> None:
    assert "value-quantity" in invalid(parser, "Observation", "value-quantity", value).message


# -- references ------------------------------------------------------------------------------


def test_reference_forms(parser: QueryParser) -> None:
    assert one(parser, "Observation", "subject", "Patient/123").values == (
        ReferenceValue("Patient", "123"),
    )
    assert one(parser, "Observation", "subject", "123").values == (ReferenceValue(None, "123"),)
    c = one(parser, "Observation", "subject:Patient", "123")
    assert c.modifier is Modifier.TYPE
    assert c.target_type == "Patient"
    assert c.values == (ReferenceValue("Patient", "123"),)
    local = one(parser, "Observation", "subject", f"{LOCAL_BASE}/Patient/9/_history/2")
    assert local.values == (ReferenceValue("Patient", "9", "2"),)
    remote = one(parser, "Observation", "subject", "https://other.org/fhir/Patient/9")
    assert remote.values == (ReferenceValue(None, None, None, "https://other.org/fhir/Patient/9"),)
    c = one(parser, "Observation", "subject:identifier", "urn:id|510703")
    assert c.modifier is Modifier.IDENTIFIER
    assert c.values == (TokenValue("urn:id", "510703", match_system=True),)


def test_bad_references(parser: QueryParser) -> None:
    assert "Practitioner" in invalid(parser, "Observation", "subject", "Practitioner/1").message
    invalid(parser, "Observation", "subject:Practitioner", "1")  # not a target
    invalid(parser, "Observation", "subject:Patient", "Group/1")
    invalid(parser, "Observation", "subject", "Patient/1/2/3/4")
    invalid(parser, "Observation", "subject", "Patient/bad id!")


# -- uri and composite -------------------------------------------------------------------


def test_uri(parser: QueryParser) -> None:
    assert one(parser, "ValueSet", "url", "http://hl7.org/fhir/ValueSet/x").values == (
        UriValue("http://hl7.org/fhir/ValueSet/x"),
    )
    assert one(parser, "ValueSet", "url:below", "http://hl7.org/fhir").modifier is Modifier.BELOW
    assert (
        one(parser, "ValueSet", "url:above", "http://hl7.org/fhir/a/b").modifier is Modifier.ABOVE
    )


def test_composites(parser: QueryParser) -> None:
    c = one(
        parser,
        "Observation",
        "code-value-quantity",
        "http://loinc.org|8480-6$gt140|http://unitsofmeasure.org|mm[Hg]",
    )
    (v,) = c.values
    assert v == CompositeValue((
        TokenValue("http://loinc.org", "8480-6", match_system=True),
        QuantityValue(Prefix.GT, Decimal(140), "http://unitsofmeasure.org", "mm[Hg]"),
    ))  # fmt: skip
    c = one(parser, "Observation", "component-code-value-quantity", "8480-6$lt60,8462-4$lt60")
    assert len(c.values) == 2
    c = one(parser, "Observation", "code-value-date", "1234$ge2020-01")
    assert isinstance(c.values[0], CompositeValue)
    assert isinstance(c.values[0].components[1], DateValue)
    invalid(parser, "Observation", "code-value-quantity", "8480-6")
    invalid(parser, "Observation", "code-value-quantity", "8480-6$x$y")
    invalid(parser, "Observation", "code-value-quantity", "8480-6$big")


# -- chains and _has ----------------------------------------------------------------------


def test_chain_with_type(parser: QueryParser) -> None:
    q = parser.parse("Observation", [("subject:Patient.name", "张三")])
    (c,) = q.clauses
    assert isinstance(c, ChainClause)
    assert c.target_types == ("Patient",)
    ((_, inner),) = c.targets
    assert isinstance(inner, ParamClause)
    assert inner.param.resource_type == "Patient"
    assert inner.values == (StringValue("张三", "张三"),)


def test_chain_resolves_target_types(parser: QueryParser) -> None:
    (c,) = parser.parse("Observation", [("subject.organization.name", "Mianyang")]).clauses
    assert isinstance(c, ChainClause)
    # Group has no "organization"; Device's and Patient's point at Organization.
    assert c.target_types == ("Device", "Location", "Patient")
    for rtype, inner in c.targets:
        assert isinstance(inner, ChainClause)
        assert inner.param.resource_type == rtype
        assert inner.target_types == ("Organization",)
        ((_, leaf),) = inner.targets
        assert isinstance(leaf, ParamClause)
        assert leaf.param.type is ParamType.STRING


def test_chain_depth_and_modifiers(parser: QueryParser) -> None:
    (c,) = parser.parse(
        "Encounter", [("subject:Patient.general-practitioner:Practitioner.name:exact", "Li")]
    ).clauses
    assert isinstance(c, ChainClause)
    ((_, mid),) = c.targets
    assert isinstance(mid, ChainClause)
    ((_, leaf),) = mid.targets
    assert isinstance(leaf, ParamClause)
    assert leaf.modifier is Modifier.EXACT
    (c,) = parser.parse("Observation", [("subject.identifier", "urn:id|1")]).clauses
    assert isinstance(c, ChainClause)


def test_chain_errors(parser: QueryParser) -> None:
    assert "cannot be chained" in invalid(parser, "Observation", "code.name", "x").message
    assert "no target type" in invalid(parser, "Observation", "subject.foo", "x").message
    # 'location' is a reference on Procedure but a uri on DocumentReference, both
    # targets of reason-reference: ambiguous unless the type is named.
    err = invalid(parser, "Procedure", "reason-reference.location", "x")
    assert "ambiguous" in err.message
    ok = parser.parse("Procedure", [("reason-reference:Procedure.location", "Location/1")])
    assert len(ok.clauses) == 1
    deep = "link" + ".link" * 10
    invalid(parser, "Patient", deep, "x")


def test_has_and_nested_has(parser: QueryParser) -> None:
    (c,) = parser.parse("Patient", [("_has:Observation:patient:code", "1234-5")]).clauses
    assert isinstance(c, HasClause)
    assert c.source_type == "Observation"
    assert c.param.code == "patient"
    assert isinstance(c.inner, ParamClause)
    (c,) = parser.parse(
        "Patient", [("_has:Observation:patient:_has:Provenance:target:agent", "Practitioner/1")]
    ).clauses
    assert isinstance(c, HasClause)
    assert isinstance(c.inner, HasClause)
    assert c.inner.source_type == "Provenance"
    (c,) = parser.parse("Patient", [("_has:Observation:subject:code:text", "glucose")]).clauses
    assert isinstance(c, HasClause)
    assert isinstance(c.inner, ParamClause)
    assert c.inner.modifier is Modifier.TEXT


@pytest.mark.parametrize(
    "name",
    [
        "_has:Observation:patient",
        "_has:Nope:patient:code",
        "_has:Observation:code:code",
        "_has:Observation:encounter:code",  # Observation.encounter cannot refer to a Patient
        "_has:Observation:patient:nope",
    ],
)
def test_bad_has(parser: QueryParser, name: str) -> None:
    invalid(parser, "Patient", name, "x")


# -- result parameters ----------------------------------------------------------------------


def test_includes(parser: QueryParser) -> None:
    q = parser.parse(
        "Observation",
        [
            ("_include", "Observation:subject:Patient"),
            ("_include", "Observation:*"),
            ("_include:iterate", "Patient:general-practitioner"),
            ("_revinclude", "Provenance:target"),
            ("_include", "*"),
        ],
    )
    first = q.includes[0]
    assert (first.source_type, first.param and first.param.code, first.target_type) == (
        "Observation",
        "subject",
        "Patient",
    )
    assert q.includes[1].param is None
    assert q.includes[2].iterate
    assert q.includes[3].param is None
    (rev,) = q.revincludes
    assert rev.reverse
    assert rev.source_type == "Provenance"
    for bad in [
        "Observation",
        "Patient:name",
        "Observation:code",
        "Observation:subject:Practitioner",
        "Encounter:subject",
    ]:
        invalid(parser, "Observation", "_include", bad)
    invalid(parser, "Observation", "_include:deep", "Observation:subject")
    invalid(parser, "Patient", "_revinclude", "Observation:encounter")


def test_sort_count_summary_elements_total(parser: QueryParser) -> None:
    q = parser.parse(
        "Observation",
        [
            ("_sort", "-date,code,_lastUpdated"),
            ("_count", "20"),
            ("_summary", "count"),
            ("_elements", "code,subject"),
            ("_total", "accurate"),
            ("_format", "json"),
        ],
    )
    assert [(k.param.code, k.descending) for k in q.sort] == [
        ("date", True),
        ("code", False),
        ("_lastUpdated", False),
    ]
    assert q.count == 20
    assert q.summary is Summary.COUNT
    assert q.elements == ("code", "subject")
    assert q.total is Total.ACCURATE
    assert q.ignored == ()
    assert parser.parse("Observation", [("_count", "100000")]).count == 500  # capped


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_sort", "nope"),
        ("_sort", "code-value-quantity"),
        ("_count", "-1"),
        ("_count", "ten"),
        ("_summary", "yes"),
        ("_total", "all"),
        ("_elements", "a b"),
        ("_count:x", "1"),
    ],
)
def test_bad_result_parameters(parser: QueryParser, name: str, value: str) -> None:
    assert name.partition(":")[0] in invalid(parser, "Observation", name, value).message


def test_repeated_result_parameter(parser: QueryParser) -> None:
    with pytest.raises(InvalidSearch, match="_count"):
        parser.parse("Observation", [("_count", "1"), ("_count", "2")])


# -- unknown, unsupported, strict ---------------------------------------------------------


def test_unknown_and_unsupported_are_warnings(parser: QueryParser) -> None:
    q = parser.parse(
        "Observation",
        [("foo", "1"), ("_text", "x"), ("code", ""), ("code", "1")],
    )
    assert len(q.clauses) == 1
    assert [(i.name, i.kind) for i in q.ignored] == [
        ("foo", IgnoredKind.UNKNOWN),
        ("_text", IgnoredKind.UNSUPPORTED),
        ("code", IgnoredKind.EMPTY),
    ]
    q = parser.parse("Location", [("near", "1|2|3|km")])
    assert q.ignored[0].kind is IgnoredKind.UNSUPPORTED


def test_strict_rejects_unknown(parser: QueryParser) -> None:
    with pytest.raises(InvalidSearch) as info:
        parser.parse("Observation", [("foo", "1"), ("_content", "x")], strict=True)
    assert "foo" in info.value.message
    assert [i.code for i in info.value.all_issues()] == ["not-supported", "not-supported"]
    # An empty value is ignored even when strict.
    assert parser.parse("Observation", [("code", "")], strict=True).clauses == ()


def test_unknown_type(parser: QueryParser) -> None:
    invalid(parser, "Nope", "code", "x")


def test_everything(parser: QueryParser) -> None:
    q = parser.parse_everything(
        [("_since", "2020-01-01T00:00:00Z"), ("_type", "Observation,Encounter"), ("_count", "50")]
    )
    assert q.since is not None
    assert q.types == ("Observation", "Encounter")
    assert q.count == 50
    with pytest.raises(InvalidSearch, match="_since"):
        parser.parse_everything([("_since", "yesterday")])
    with pytest.raises(InvalidSearch, match="_type"):
        parser.parse_everything([("_type", "Nope")])
    assert parser.parse_everything([("foo", "x")]).ignored[0].name == "foo"
    with pytest.raises(InvalidSearch):
        parser.parse_everything([("foo", "x")], strict=True)


# -- never an unhandled exception ----------------------------------------------------------

NAMES = st.sampled_from(
    [
        "name", "family:exact", "code", "code:text", "code:not", "date", "birthdate",
        "value-quantity", "subject", "subject:Patient", "subject.name", "patient.identifier",
        "code-value-quantity", "_has:Observation:patient:code", "_include", "_revinclude",
        "_sort", "_count", "_summary", "_total", "_elements", "url:below", "_lastUpdated",
        "identifier:of-type", "general-practitioner:identifier", "probability", "_id",
    ]
)  # fmt: skip
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
VALUES = st.one_of(
    TEXT,
    st.from_regex(r"(eq|ne|gt|lt|ge|le|sa|eb|ap|xx)?[0-9T:\-+.Z]{0,25}", fullmatch=True),
    st.from_regex(r"[a-z:/.]{0,10}\|[0-9a-z\-]{0,8}(\$[a-z0-9|.]{0,10})?", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(
    rtype=st.sampled_from(["Patient", "Observation", "Encounter", "ValueSet", "RiskAssessment"]),
    params=st.lists(st.tuples(st.one_of(NAMES, TEXT), VALUES), max_size=4),
    strict=st.booleans(),
)
def test_parser_never_crashes(
    parser: QueryParser, rtype: str, params: list[tuple[str, str]], strict: bool
) -> None:
    error: InvalidSearch | None = None
    try:
        parser.parse(rtype, params, strict=strict)
    except InvalidSearch as exc:
        error = exc
    if error is not None:
        assert error.message
        assert error.outcome()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize(
    "params",
    [
        [("_count", "1")],
        [("identifier", "a"), ("_sort", "name")],
        [("identifier", "a"), ("_include", "Patient:organization")],
        [("nickname", "x")],
        [("identifier", "")],
        [("_text", "x")],
        [],
        [("_format", "json")],
    ],
)
def test_conditions_never_ignore_a_criterion(
    parser: QueryParser, params: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidSearch):
        parser.parse_condition("Patient", params)


def test_conditions_accept_any_search(parser: QueryParser) -> None:
    query = parser.parse_condition(
        "Patient",
        [
            ("name", "张"),
            ("birthdate", "ge1980"),
            ("general-practitioner.name", "li"),
            ("_format", "json"),
        ],
    )
    assert len(query.clauses) == 3


def test_unindexed_parameters_are_unsupported_not_silently_empty(
    parser: QueryParser,
) -> None:
    narrow = QueryParser(parser.registry, unindexed={("Bundle", "composition")})
    query = narrow.parse("Bundle", [("composition", "Composition/1")])
    assert query.clauses == ()
    assert query.ignored[0].name == "composition"
    with pytest.raises(InvalidSearch, match="composition"):
        narrow.parse("Bundle", [("composition", "x")], strict=True)
    with pytest.raises(InvalidSearch, match="_sort"):
        narrow.parse("Bundle", [("_sort", "composition")])


def test_composite_reference_components_are_references(parser: QueryParser) -> None:
    query = parser.parse("DocumentReference", [("relationship", "DocumentReference/d1$replaces")])
    clause = query.clauses[0]
    assert isinstance(clause, ParamClause)
    value = clause.values[0]
    assert isinstance(value, CompositeValue)
    assert value.components[0] == ReferenceValue("DocumentReference", "d1")
