"""hie.fhir.validation: R4 validation through the public Validator API."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from hie.errors import InvalidResource, Issue
from hie.fhir.validation import Validator

CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
}
ENCOUNTER = {
    "resourceType": "Encounter",
    "status": "finished",
    "class": {"system": CODE_SYSTEM, "code": "AMB"},
}


def _issues(validator: Validator, resource: Any) -> list[tuple[str, tuple[str, ...]]]:
    return [(i.code, i.expression) for i in validator.validate(resource)]


def _only(validator: Validator, resource: Any) -> Issue:
    issues = validator.validate(resource)
    assert len(issues) == 1, issues
    return issues[0]


def _with(base: Mapping[str, Any], **members: Any) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    out.update(members)
    return out


# -- resource types ---------------------------------------------------------------


def test_minimal_resources_are_valid(validator: Validator) -> None:
    assert validator.validate({"resourceType": "Patient"}) == []
    assert validator.validate(OBSERVATION) == []
    assert validator.validate(ENCOUNTER) == []
    validator.check(OBSERVATION)  # does not raise


@pytest.mark.parametrize(
    ("resource", "words"),
    [
        ({}, "Missing resourceType"),
        ({"id": "1"}, "Missing resourceType"),
        ({"resourceType": "Foo"}, "not a FHIR R4 resource type"),
        ({"resourceType": 7}, "must be a string"),
        ({"resourceType": "Citation"}, "added in R4B"),
        ({"resourceType": "SubscriptionTopic"}, "added in R4B"),
        ({"resourceType": "MedicinalProductDefinition"}, "added in R4B"),
        ({"resourceType": "MedicinalProduct"}, "does not support"),
        ({"resourceType": "DomainResource"}, "abstract"),
        ({"resourceType": "HumanName"}, "not a FHIR R4 resource type"),
    ],
)
def test_unknown_or_unserved_resource_types_are_rejected(
    validator: Validator, resource: dict[str, Any], words: str
) -> None:
    issue = _only(validator, resource)
    assert issue.code == "structure"
    assert issue.expression == ("resourceType",)
    assert words in issue.diagnostics


def test_resource_types_are_checked_in_contained_bundles_and_parameters(
    validator: Validator,
) -> None:
    patient = {
        "resourceType": "Patient",
        "contained": [{"resourceType": "Organization"}, {"resourceType": "Citation"}, {"id": "x"}],
    }
    assert _issues(validator, patient) == [
        ("structure", ("Patient.contained[1].resourceType",)),
        ("structure", ("Patient.contained[2].resourceType",)),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": OBSERVATION}, {"resource": {"resourceType": "SubscriptionStatus"}}],
    }
    assert _issues(validator, bundle) == [("structure", ("Bundle.entry[1].resource.resourceType",))]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "resource": {"resourceType": "Nope"}}],
    }
    assert _issues(validator, parameters) == [
        ("structure", ("Parameters.parameter[0].resource.resourceType",))
    ]


def test_contained_resources_are_validated_in_full(validator: Validator) -> None:
    bad = _with(OBSERVATION, status="done", effectivePeriod={"stop": "2020"})
    issues = _issues(validator, {"resourceType": "Patient", "contained": [OBSERVATION, bad]})
    assert issues == [
        ("code-invalid", ("Patient.contained[1].status",)),
        ("structure", ("Patient.contained[1].effectivePeriod.stop",)),
    ]


# -- elements R4 lacks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        (
            {"resourceType": "ActivityDefinition", "status": "draft", "subjectCanonical": "x"},
            "ActivityDefinition.subjectCanonical",
        ),
        (
            {
                "resourceType": "PlanDefinition",
                "status": "draft",
                "action": [{"title": "a", "subjectCanonical": "http://x"}],
            },
            "PlanDefinition.action[0].subjectCanonical",
        ),
        (
            {
                "resourceType": "Patient",
                "extension": [
                    {"url": "http://x", "valueCodeableReference": {"concept": {"text": "t"}}}
                ],
            },
            "Patient.extension[0].valueCodeableReference",
        ),
        (
            {
                "resourceType": "Patient",
                "extension": [{"url": "http://x", "valueRatioRange": {"highNumerator": {}}}],
            },
            "Patient.extension[0].valueRatioRange",
        ),
        (
            {
                "resourceType": "EvidenceVariable",
                "status": "draft",
                "characteristic": [{"definitionCodeableConcept": {"text": "age"}}],
                "handling": "continuous",
            },
            "EvidenceVariable.handling",
        ),
    ],
)
def test_elements_added_in_r4b_are_rejected(
    validator: Validator, resource: dict[str, Any], path: str
) -> None:
    issue = _only(validator, resource)
    assert (issue.code, issue.expression) == ("structure", (path,))
    assert "added in R4B" in issue.diagnostics


def test_unknown_elements_are_rejected_anywhere(validator: Validator) -> None:
    resource = _with(
        OBSERVATION,
        fhir_comments="the models accept this",
        code={"text": "x", "colour": "red"},
        component=[{"code": {"text": "c"}, "valueQuantity": {"value": 1, "unitt": "mg"}}],
    )
    assert sorted(_issues(validator, resource)) == [
        ("structure", ("Observation.code.colour",)),
        ("structure", ("Observation.component[0].valueQuantity.unitt",)),
        ("structure", ("Observation.fhir_comments",)),
    ]


def test_backbone_elements_of_datatypes_have_no_modifier_extension(validator: Validator) -> None:
    # Timing.repeat is an Element in R4, not a BackboneElement.
    request = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "occurrenceTiming": {"repeat": {"frequency": 1, "modifierExtension": [{"url": "u"}]}},
    }
    assert _issues(validator, request) == [
        ("structure", ("ServiceRequest.occurrenceTiming.repeat.modifierExtension",))
    ]


# -- required bindings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ({"resourceType": "Patient", "gender": "mail"}, "Patient.gender"),
        (_with(OBSERVATION, status="done"), "Observation.status"),
        (_with(ENCOUNTER, status="completed"), "Encounter.status"),
        (
            _with(ENCOUNTER, statusHistory=[{"status": "finished", "period": {}}]),
            "Encounter.statusHistory[0].period",
        ),
        (
            _with(
                ENCOUNTER,
                statusHistory=[
                    {"status": "arrived", "period": {"start": "2020"}},
                    {"status": "closed", "period": {"start": "2021"}},
                ],
            ),
            "Encounter.statusHistory[1].status",
        ),
        ({"resourceType": "Bundle", "type": "transactions"}, "Bundle.type"),
        (
            {"resourceType": "Patient", "telecom": [{"system": "phone"}, {"system": "fax2"}]},
            "Patient.telecom[1].system",
        ),
        ({"resourceType": "Patient", "name": [{"use": "nick"}]}, "Patient.name[0].use"),
        (
            {"resourceType": "Patient", "identifier": [{"use": "primary", "value": "1"}]},
            "Patient.identifier[0].use",
        ),
        (
            {"resourceType": "ResearchStudy", "status": "draft"},  # R5's code, not R4's
            "ResearchStudy.status",
        ),
    ],
)
def test_required_value_sets_on_codes_are_enforced(
    validator: Validator, resource: dict[str, Any], path: str
) -> None:
    issue = _only(validator, resource)
    assert issue.expression == (path,)
    assert issue.code in ("code-invalid", "structure")


def test_code_issue_names_the_value_set_and_its_codes(validator: Validator) -> None:
    issue = _only(validator, {"resourceType": "Patient", "gender": "mail"})
    assert issue.code == "code-invalid"
    assert "http://hl7.org/fhir/ValueSet/administrative-gender" in issue.diagnostics
    assert "female | male | other | unknown" in issue.diagnostics


def test_valid_codes_pass(validator: Validator) -> None:
    for gender in ("male", "female", "other", "unknown"):
        assert validator.validate({"resourceType": "Patient", "gender": gender}) == []
    for status in ("registered", "preliminary", "final", "amended", "entered-in-error"):
        assert validator.validate(_with(OBSERVATION, status=status)) == []
    assert validator.validate({"resourceType": "ResearchStudy", "status": "active"}) == []


def test_unenforceable_value_sets_are_not_enforced(validator: Validator) -> None:
    # Attachment.contentType is bound to BCP-13 mime types, which R4 does not enumerate.
    patient = {"resourceType": "Patient", "photo": [{"contentType": "image/x-made-up"}]}
    assert validator.validate(patient) == []


# -- shapes and JSON types ----------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({"name": {"family": "Li"}}, ("structure", "Patient.name")),
        ({"gender": ["male"]}, ("structure", "Patient.gender")),
        ({"name": []}, ("structure", "Patient.name")),
        ({"name": [{}]}, ("structure", "Patient.name[0]")),
        ({"name": ["Li"]}, ("structure", "Patient.name[0]")),
        ({"name": [None]}, ("structure", "Patient.name[0]")),
        ({"maritalStatus": {}}, ("structure", "Patient.maritalStatus")),
        ({"maritalStatus": None}, ("structure", "Patient.maritalStatus")),
        ({"active": "true"}, ("value", "Patient.active")),
        ({"active": 1}, ("value", "Patient.active")),
        ({"active": None}, ("structure", "Patient.active")),
        ({"multipleBirthInteger": 1.5}, ("value", "Patient.multipleBirthInteger")),
        ({"multipleBirthInteger": "2"}, ("value", "Patient.multipleBirthInteger")),
        ({"multipleBirthInteger": True}, ("value", "Patient.multipleBirthInteger")),
        ({"birthDate": 20200101}, ("value", "Patient.birthDate")),
        ({"birthDate": ""}, ("value", "Patient.birthDate")),
        ({"name": [{"given": ["Wei", 3]}]}, ("value", "Patient.name[0].given[1]")),
        ({"name": [{"family": {"text": "Li"}}]}, ("value", "Patient.name[0].family")),
    ],
)
def test_wrong_shapes_and_json_types_are_issues(
    validator: Validator, members: dict[str, Any], expected: tuple[str, str]
) -> None:
    issue = _only(validator, {"resourceType": "Patient", **members})
    assert (issue.code, issue.expression[0]) == expected


def test_decimals_must_be_json_numbers(validator: Validator) -> None:
    good = _with(OBSERVATION, valueQuantity={"value": 72.5, "unit": "kg"})
    assert validator.validate(good) == []
    assert validator.validate(_with(OBSERVATION, valueQuantity={"value": 72})) == []
    bad = _with(OBSERVATION, valueQuantity={"value": "72.5"})
    assert _issues(validator, bad) == [("value", ("Observation.valueQuantity.value",))]


@pytest.mark.parametrize(
    "resource", [None, "Patient", 42, 4.2, True, ["resourceType", "Patient"], b"{}"]
)
def test_a_resource_that_is_not_an_object_is_an_issue(validator: Validator, resource: Any) -> None:
    issue = _only(validator, resource)
    assert issue.code == "structure"
    assert "JSON object" in issue.diagnostics


def test_odd_python_input_gives_issues_not_exceptions(validator: Validator) -> None:
    assert _issues(validator, {"resourceType": "Patient", 3: "x"})[0][0] == "structure"
    assert _issues(validator, {"resourceType": "Patient", "name": [{"given": [object()]}]}) == [
        ("value", ("Patient.name[0].given[0]",))
    ]
    assert _issues(validator, {"resourceType": "Patient", "name": ({"family": "x"},)}) == [
        ("structure", ("Patient.name",))
    ]


def test_read_only_mappings_are_accepted(validator: Validator) -> None:
    from types import MappingProxyType

    assert validator.validate(MappingProxyType({"resourceType": "Patient"})) == []


def test_validation_does_not_change_the_resource(validator: Validator) -> None:
    resource = _with(OBSERVATION, valueQuantity={"value": 1.50}, effectiveDateTime="2020-01-01")
    before = copy.deepcopy(resource)
    validator.validate(resource)
    assert resource == before


@pytest.mark.parametrize("depth", [300, 3000])
def test_very_deep_nesting_is_an_issue_not_a_crash(validator: Validator, depth: int) -> None:
    item: dict[str, Any] = {"linkId": "leaf", "type": "display"}
    for level in range(depth):
        item = {"linkId": str(level), "type": "group", "item": [item]}
    issues = validator.validate(
        {"resourceType": "Questionnaire", "status": "draft", "item": [item]}
    )
    assert [i.code for i in issues] == ["structure"]
    assert "nested too deeply" in issues[0].diagnostics


def test_ordinary_nesting_is_fine(validator: Validator) -> None:
    item: dict[str, Any] = {"linkId": "leaf", "type": "display"}
    for level in range(40):
        item = {"linkId": str(level), "type": "group", "item": [item]}
    questionnaire = {"resourceType": "Questionnaire", "status": "draft", "item": [item]}
    assert validator.validate(questionnaire) == []


# -- required elements and choices --------------------------------------------------


def test_missing_required_elements_are_issues(validator: Validator) -> None:
    issues = validator.validate({"resourceType": "Observation"})
    assert [(i.code, i.expression) for i in issues] == [
        ("required", ("Observation.status",)),
        ("required", ("Observation.code",)),
    ]
    coding = {"resourceType": "Patient", "extension": [{"valueString": "no url"}]}
    assert _issues(validator, coding) == [("required", ("Patient.extension[0].url",))]


def test_a_required_primitive_may_be_only_an_extension(validator: Validator) -> None:
    absent = {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason"}]}
    absent["extension"][0]["valueCode"] = "unknown"
    resource = {"resourceType": "Observation", "_status": absent, "code": {"text": "x"}}
    assert validator.validate(resource) == []


def test_choice_types(validator: Validator) -> None:
    both = {"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020"}
    issue = _only(validator, both)
    assert issue.code == "structure"
    assert "deceased[x]" in issue.diagnostics
    wrong_type = {"resourceType": "Patient", "deceasedString": "yes"}
    assert _issues(validator, wrong_type) == [("structure", ("Patient.deceasedString",))]
    request = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    assert _issues(validator, request) == [("required", ("MedicationRequest.medication",))]
    request["medicationCodeableConcept"] = {"text": "aspirin"}
    assert validator.validate(request) == []


def test_content_references_are_followed(validator: Validator) -> None:
    questionnaire = {
        "resourceType": "Questionnaire",
        "status": "active",
        "item": [
            {
                "linkId": "1",
                "type": "group",
                "item": [{"linkId": "1.1", "type": "boolean"}, {"linkId": "1.2", "type": "yes"}],
            }
        ],
    }
    issue = _only(validator, questionnaire)
    assert (issue.code, issue.expression) == (
        "code-invalid",
        ("Questionnaire.item[0].item[1].type",),
    )


# -- primitive formats (the R4B models) ---------------------------------------------


@pytest.mark.parametrize(
    ("members", "path"),
    [
        ({"birthDate": "2020-13-01"}, "Patient.birthDate"),
        ({"birthDate": "2020-02-30"}, "Patient.birthDate"),
        ({"deceasedDateTime": "2020-01-01T10:00"}, "Patient.deceasedDateTime"),
        ({"id": "a b"}, "Patient.id"),
        ({"id": "x" * 65}, "Patient.id"),
        ({"implicitRules": "http://a b"}, "Patient.implicitRules"),
        ({"photo": [{"data": "@@@@"}]}, "Patient.photo[0].data"),
        ({"gender": " male"}, "Patient.gender"),
        ({"name": [{"given": ["Wei", ""]}]}, "Patient.name[0].given[1]"),
        ({"meta": {"lastUpdated": "2020-01-01"}}, "Patient.meta.lastUpdated"),
        ({"multipleBirthInteger": 2**31}, "Patient.multipleBirthInteger"),
    ],
)
def test_bad_primitive_values_name_their_path(
    validator: Validator, members: dict[str, Any], path: str
) -> None:
    issues = validator.validate({"resourceType": "Patient", **members})
    assert [i.expression for i in issues] == [(path,)]
    assert issues[0].code in ("value", "code-invalid")
    assert issues[0].diagnostics


def test_nested_model_errors_have_fhirpath_expressions(validator: Validator) -> None:
    resource = _with(
        OBSERVATION,
        effectivePeriod={"start": "yesterday"},
        component=[
            {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
            {"code": {"text": "b"}, "valueDateTime": "2020-01-01T25:00:00Z"},
        ],
    )
    issues = {i.expression: i for i in validator.validate(resource)}
    assert sorted(issues) == [
        ("Observation.component[1].valueDateTime",),
        ("Observation.effectivePeriod.start",),
    ]
    assert {i.code for i in issues.values()} == {"value"}
    start = issues[("Observation.effectivePeriod.start",)].diagnostics
    assert "'yesterday'" in start
    assert "dateTime" in start


def test_uuids_follow_r4_not_r4b(validator: Validator) -> None:
    def patient(uuid: str) -> dict[str, Any]:
        return {"resourceType": "Patient", "extension": [{"url": "http://x", "valueUuid": uuid}]}

    # A version-1 uuid is valid R4 (R4B's model wants version 4).
    assert validator.validate(patient("urn:uuid:c757873d-ec9a-1326-a141-556f43239520")) == []
    assert validator.validate(patient("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")) == []
    for bad in (
        "c757873d-ec9a-4326-a141-556f43239520",
        "urn:uuid:C757873D-EC9A-4326-A141-556F43239520",
    ):
        assert _issues(validator, patient(bad)) == [("value", ("Patient.extension[0].valueUuid",))]


# -- primitive extensions -----------------------------------------------------------


def _ext(url: str = "http://example.org/why", **value: Any) -> dict[str, Any]:
    return {"extension": [{"url": url, **value}]}


def test_primitive_extensions(validator: Validator) -> None:
    assert validator.validate({"resourceType": "Patient", "_gender": _ext(valueCode="x")}) == []
    with_value = {"resourceType": "Patient", "gender": "male", "_gender": _ext(valueCode="x")}
    assert validator.validate(with_value) == []
    bad_inner = {"resourceType": "Patient", "_birthDate": _ext(valueDate="2020-99")}
    assert _issues(validator, bad_inner) == [
        ("value", ("Patient.birthDate.extension[0].valueDate",))
    ]
    unknown = {"resourceType": "Patient", "_birthDate": {"colour": "red"}}
    assert _issues(validator, unknown) == [("structure", ("Patient.birthDate.colour",))]
    assert _issues(validator, {"resourceType": "Patient", "_gender": {}}) == [
        ("structure", ("Patient.gender",))
    ]
    assert _issues(validator, {"resourceType": "Patient", "_gender": "x"}) == [
        ("structure", ("Patient.gender",))
    ]


def test_only_extensible_primitives_have_underscore_siblings(validator: Validator) -> None:
    assert _issues(validator, {"resourceType": "Patient", "_name": _ext(valueCode="x")}) == [
        ("structure", ("Patient.name",))
    ]
    assert _issues(validator, {"resourceType": "Patient", "_id": _ext(valueCode="x")}) == [
        ("structure", ("Patient.id",))
    ]
    narrative = {"status": "generated", "div": "<div>x</div>", "_div": _ext(valueCode="x")}
    assert _issues(validator, {"resourceType": "Patient", "text": narrative}) == [
        ("structure", ("Patient.text.div",))
    ]


def test_repeating_primitive_extensions_pair_up(validator: Validator) -> None:
    def patient(**name: Any) -> dict[str, Any]:
        return {"resourceType": "Patient", "name": [name]}

    ext = _ext(valueString="x")
    assert validator.validate(patient(given=["Wei", None], _given=[None, ext])) == []
    assert validator.validate(patient(_given=[ext, ext])) == []
    assert _issues(validator, patient(given=["Wei", None])) == [
        ("structure", ("Patient.name[0].given[1]",))
    ]
    assert _issues(validator, patient(given=["Wei", None], _given=[None, None])) == [
        ("structure", ("Patient.name[0].given[1]",))
    ]
    assert _issues(validator, patient(given=["Wei"], _given=[None, ext])) == [
        ("structure", ("Patient.name[0].given",))
    ]
    assert _issues(validator, patient(_given=[ext, None])) == [
        ("structure", ("Patient.name[0].given[1]",))
    ]
    assert _issues(validator, patient(given=["Wei"], _given=ext)) == [
        ("structure", ("Patient.name[0].given",))
    ]


# -- R4 elements the R4B models lack or shape differently ----------------------------


def test_r4_extension_value_primitive_extensions_are_valid_and_checked(
    validator: Validator,
) -> None:
    ext = {"url": "http://x", "valueString": "a", "_valueString": _ext(valueCode="c")}
    assert validator.validate({"resourceType": "Patient", "extension": [ext]}) == []
    ext["_valueString"] = _ext(valueDateTime="2020-01-01T10:00")
    assert _issues(validator, {"resourceType": "Patient", "extension": [ext]}) == [
        ("value", ("Patient.extension[0].valueString.extension[0].valueDateTime",))
    ]


def test_r4_extension_value_meta_is_valid_and_checked(validator: Validator) -> None:
    ext = {
        "url": "http://x",
        "valueMeta": {"versionId": "1", "lastUpdated": "2020-01-01T00:00:00Z"},
    }
    assert validator.validate({"resourceType": "Patient", "extension": [ext]}) == []
    ext["valueMeta"] = {"lastUpdated": "yesterday", "source": "a b"}
    assert _issues(validator, {"resourceType": "Patient", "extension": [ext]}) == [
        ("value", ("Patient.extension[0].valueMeta.source",)),
        ("value", ("Patient.extension[0].valueMeta.lastUpdated",)),
    ]


def test_r4_evidence_is_valid_and_checked(validator: Validator) -> None:
    evidence = {
        "resourceType": "Evidence",
        "status": "active",
        "name": "BetaBlockerEvidence",
        "approvalDate": "2020-01-01",
        "exposureBackground": {"reference": "EvidenceVariable/1"},
        "effectivePeriod": {"start": "2020-01-01"},
    }
    assert validator.validate(evidence) == []
    missing = {k: v for k, v in evidence.items() if k != "exposureBackground"}
    assert _issues(validator, missing) == [("required", ("Evidence.exposureBackground",))]
    bad = _with(evidence, effectivePeriod={"start": "2020-01-99"}, statistic=[{}])
    assert _issues(validator, bad) == [
        ("structure", ("Evidence.statistic",)),
        ("value", ("Evidence.effectivePeriod.start",)),
    ]


def test_r4_evidence_variable_characteristic_is_valid(validator: Validator) -> None:
    variable = {
        "resourceType": "EvidenceVariable",
        "status": "active",
        "type": "dichotomous",
        "characteristic": [
            {
                "definitionCodeableConcept": {"text": "smoker"},
                "participantEffectivePeriod": {"start": "2020"},
                "timeFromStart": {"value": 3, "unit": "d"},
            }
        ],
    }
    assert validator.validate(variable) == []
    variable["type"] = "binary"
    assert _issues(validator, variable) == [("code-invalid", ("EvidenceVariable.type",))]
    # R4 requires at least one characteristic; R4B does not.
    del variable["characteristic"]
    variable["type"] = "continuous"
    assert _issues(validator, variable) == [("required", ("EvidenceVariable.characteristic",))]


# -- check() ------------------------------------------------------------------------


def test_check_raises_invalid_resource_with_every_issue(validator: Validator) -> None:
    resource = {"resourceType": "Patient", "gender": "mail", "birthDate": "1990-13-01", "x": 1}
    with pytest.raises(InvalidResource) as caught:
        validator.check(resource)
    error = caught.value
    assert error.status == 400
    assert sorted(i.expression[0] for i in error.all_issues()) == [
        "Patient.birthDate",
        "Patient.gender",
        "Patient.x",
    ]
    assert "Invalid resource" in error.message
    assert {i["code"] for i in error.outcome()["issue"]} == {"code-invalid", "structure", "value"}


@pytest.mark.parametrize(
    ("members", "valid"),
    [
        ({"implicitRules": "http://例子.中国/规则"}, True),
        ({"implicitRules": "http://a\u00a0b"}, False),
        ({"implicitRules": "http://a\tb"}, False),
        ({"implicitRules": "http://a\x1fb"}, False),
        ({"photo": [{"data": "YWJj ZGVm"}]}, True),
        ({"photo": [{"data": "YWJjZGVm" * 5000}]}, True),
        ({"photo": [{"data": "YWJjZGV"}]}, False),
        ({"photo": [{"data": "YWJj*GVm"}]}, False),
        ({"text": {"status": "generated", "div": "<div>病历</div>"}}, True),
    ],
)
def test_r4_formats(validator: Validator, members: dict[str, Any], valid: bool) -> None:
    issues = validator.validate({"resourceType": "Patient", **members})
    assert (issues == []) is valid, issues


def test_markdown_format(validator: Validator) -> None:
    def note(text: str) -> dict[str, Any]:
        return _with(OBSERVATION, note=[{"text": text}])

    assert validator.validate(note("血压偏高\n\t复查 **两周**")) == []
    assert _issues(validator, note("a\x0bb")) == [("value", ("Observation.note[0].text",))]
    assert _issues(validator, note("a\x1cb")) == [("value", ("Observation.note[0].text",))]


def test_choice_values_with_their_primitive_extensions(validator: Validator) -> None:
    ext = _ext(valueCode="x")
    assert validator.validate(_with(OBSERVATION, valueString="a", _valueString=ext)) == []
    assert validator.validate(_with(OBSERVATION, _valueString=ext)) == []
    mixed = _with(OBSERVATION, valueQuantity={"value": 1}, _valueString=ext)
    assert _issues(validator, mixed) == [("structure", ("Observation.valueString",))]


# -- NUL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "where"),
    [
        ({"resourceType": "Patient", "name": [{"family": "王\x00"}]}, "Patient.name[0].family"),
        (
            {"resourceType": "Patient", "name": [{"given": ["a", "\x00b"]}]},
            "Patient.name[0].given[1]",
        ),
        (_with(OBSERVATION, valueString="x\x00y"), "Observation.valueString"),
        (_with(OBSERVATION, code={"text": "\x00"}), "Observation.code.text"),
        (
            {
                "resourceType": "Patient",
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml">a\x00</div>',
                },
            },
            "Patient.text.div",
        ),
        (_with(OBSERVATION, note=[{"text": "n\x00"}]), "Observation.note[0].text"),
        (
            {"resourceType": "Patient", "identifier": [{"system": "urn:x\x00", "value": "1"}]},
            "Patient.identifier[0].system",
        ),
    ],
)
def test_nul_characters_are_refused_wherever_they_sit(
    validator: Validator, resource: dict[str, Any], where: str
) -> None:
    # HL7 and DICOM feeds reach the store without REST's JSON guard; PostgreSQL text
    # cannot hold NUL, so the validator must name it rather than the database fail.
    issue = _only(validator, resource)
    assert issue.expression == (where,)
    assert "NUL" in issue.diagnostics
