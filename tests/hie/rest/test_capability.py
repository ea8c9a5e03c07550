"""The CapabilityStatement lists every search parameter, modifier and operation."""

from __future__ import annotations

from typing import Any

from hie.search import default_registry
from hie.search.definitions import ParamType
from tests.support import Api


def statement(api: Api) -> dict[str, Any]:
    response = api.client.get("/fhir/metadata")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_every_searchable_parameter_is_listed_with_definition_and_type(api: Api) -> None:
    rest = statement(api)["rest"][0]
    resources = {r["type"]: r for r in rest["resource"]}
    registry = default_registry()
    for rtype in ("Patient", "Observation", "Encounter", "Consent", "AuditEvent", "ValueSet"):
        listed = {p["name"]: p for p in resources[rtype]["searchParam"]}
        for code, param in registry.params(rtype).items():
            if not param.searchable:
                assert code not in listed
                continue
            assert listed[code]["definition"] == param.url
            assert listed[code]["type"] == param.type.value
        assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"} <= set(listed)
    observation = {p["name"]: p for p in resources["Observation"]["searchParam"]}
    assert ":not" in observation["code"]["documentation"]
    assert ":identifier" in observation["subject"]["documentation"]
    assert "ap" in observation["date"]["documentation"]
    assert (
        ":below"
        in {p["name"]: p for p in resources["ValueSet"]["searchParam"]}["url"]["documentation"]
    )
    near = {p["name"] for p in resources["Location"]["searchParam"]}
    assert "near" not in near, "special parameters are not supported, so not listed"
    assert all(
        p["type"] != ParamType.SPECIAL.value for r in resources.values() for p in r["searchParam"]
    )


def test_includes_operations_and_compartment(api: Api) -> None:
    rest = statement(api)["rest"][0]
    resources = {r["type"]: r for r in rest["resource"]}
    observation = resources["Observation"]
    assert "Observation:subject" in observation["searchInclude"]
    assert "*" in observation["searchInclude"]
    assert "Encounter:patient" in resources["Patient"]["searchRevInclude"]
    operations = {o["name"]: o for o in resources["Patient"]["operation"]}
    assert operations["everything"]["definition"].endswith("Patient-everything")
    assert "validate" in operations
    assert {o["name"] for o in observation["operation"]} == {"validate"}
    assert rest["compartment"] == ["http://hl7.org/fhir/CompartmentDefinition/patient"]
    assert "_sort" in rest["documentation"]
