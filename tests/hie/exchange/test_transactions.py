"""Batch and transaction Bundles, including the Synthea test set, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import orjson
import pytest

from hie.fhir.references import iter_references
from hie.settings import Settings
from tests.support import Api


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Plain FHIR storage: these tests count Patients, so no enterprise Patients."""
    return settings.replace(identity__enabled=False)


BUNDLES = Path(__file__).parents[2] / "fixtures" / "fhir" / "synthea-bundles"
# Bundles that must fail, and why (see tests/fixtures/fhir/PROVENANCE.md).
FAILING = {
    "Bob965_Keeling57_3f6fd0bb-6cd3-eb3f-4401-cd38ace25f2b.json": "conditional reference 'Practitioner?identifier=",
    "Cecelia952_Romaguera67_f1731e33-dc55-4ee8-72d7-cece2e49bedd.json": "conditional reference 'Practitioner?identifier=",
    "uscore_bundle_patient_355.json": "Bundle.entry[266].resource.effectivePeriod.stop",
}


def total(api: Api, rtype: str) -> int:
    return int(api.get(f"{rtype}?_summary=count").get_json()["total"])


def everything(api: Api) -> int:
    return int(api.get("_history?_count=0").get_json()["total"])


@pytest.mark.parametrize("name", sorted(p.name for p in BUNDLES.glob("*.json")))
def test_synthea_bundles(api: Api, name: str) -> None:
    bundle = orjson.loads((BUNDLES / name).read_bytes())
    r = api.post("", raw=(BUNDLES / name).read_bytes())
    if name in FAILING:
        assert r.status_code in (400, 412), r.get_json()
        outcome = r.get_json()
        assert outcome["resourceType"] == "OperationOutcome"
        text = " ".join(
            i["diagnostics"] + " ".join(i.get("expression", [])) for i in outcome["issue"]
        )
        assert FAILING[name] in text
        assert everything(api) == 0, "a failed transaction writes nothing"
        return
    assert r.status_code == 200, r.get_json()
    response = r.get_json()
    assert response["type"] == "transaction-response"
    assert len(response["entry"]) == len(bundle["entry"])
    assert all(e["response"]["status"] in ("201 Created", "200 OK") for e in response["entry"])
    patients = api.get("Patient").get_json()
    assert patients["total"] == 1
    pid = patients["entry"][0]["resource"]["id"]
    observations = api.get("Observation?_count=1000").get_json()
    expected = sum(1 for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    assert observations["total"] == expected
    for entry in observations["entry"]:
        subject = entry["resource"].get("subject", {}).get("reference")
        assert subject == f"Patient/{pid}", "urn:uuid references are rewritten to the new ids"
    for entry in api.get("_history?_count=1000").get_json()["entry"]:
        for path, ref in iter_references(entry["resource"], entry["resource"]["resourceType"]):
            assert not ref.startswith("urn:uuid:"), path


def obs(subject: str, code: str = "x") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": code},
        "subject": {"reference": subject},
    }


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_transaction_is_atomic(api: Api) -> None:
    bundle = tx(
        {
            "fullUrl": "urn:uuid:1",
            "resource": {"resourceType": "Patient"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {"resourceType": "Patient", "gender": "mail"},
            "request": {"method": "POST", "url": "Patient"},
        },
    )
    r = api.post("", bundle)
    assert r.status_code == 400
    issues = r.get_json()["issue"]
    assert any(
        e.startswith("Bundle.entry[1].resource") for i in issues for e in i.get("expression", [])
    )
    assert total(api, "Patient") == 0


def test_failure_while_writing_rolls_back_earlier_entries(api: Api) -> None:
    api.put("Patient/p1", {"resourceType": "Patient", "id": "p1"})
    bundle = tx(
        {
            "resource": {"resourceType": "Patient", "id": "p2"},
            "request": {"method": "PUT", "url": "Patient/p2"},
        },
        {
            "resource": {"resourceType": "Patient", "id": "p1"},
            "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"9"'},
        },
    )
    r = api.post("", bundle)
    assert r.status_code == 412
    assert "entry 1" in r.get_json()["issue"][0]["diagnostics"]
    assert api.get("Patient/p2").status_code == 404


def test_processing_order_delete_post_put_get(api: Api) -> None:
    api.put("Patient/old", {"resourceType": "Patient", "id": "old"})
    bundle = tx(
        {"request": {"method": "GET", "url": "Patient?identifier=urn:x|new"}},
        {
            "resource": {"resourceType": "Patient", "id": "keep", "gender": "female"},
            "request": {"method": "PUT", "url": "Patient/keep"},
        },
        {
            "fullUrl": "urn:uuid:a",
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:x", "value": "new"}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "DELETE", "url": "Patient/old"}},
        {"request": {"method": "GET", "url": "Patient/keep"}},
    )
    r = api.post("", bundle)
    assert r.status_code == 200, r.get_json()
    entries = r.get_json()["entry"]
    assert entries[0]["resource"]["total"] == 1, "GET runs after POST"
    assert entries[1]["response"]["status"] == "201 Created"
    assert entries[2]["response"]["status"] == "201 Created"
    assert entries[3]["response"]["status"] == "204 No Content"
    assert entries[4]["resource"]["gender"] == "female", "GET runs after PUT"
    assert api.get("Patient/old").status_code == 410


def test_references_and_conditional_references(api: Api) -> None:
    api.post(
        "Practitioner",
        {"resourceType": "Practitioner", "identifier": [{"system": "urn:npi", "value": "1"}]},
    )
    doc = api.get("Practitioner").get_json()["entry"][0]["resource"]["id"]
    bundle = tx(
        {
            "fullUrl": "urn:uuid:p",
            "resource": {"resourceType": "Patient"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": {
                **obs("urn:uuid:p"),
                "performer": [{"reference": "Practitioner?identifier=urn:npi|1"}],
            },
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    r = api.post("", bundle, headers={"Prefer": "return=representation"})
    assert r.status_code == 200, r.get_json()
    entries = r.get_json()["entry"]
    pid = entries[0]["resource"]["id"]
    assert entries[1]["resource"]["subject"]["reference"] == f"Patient/{pid}"
    assert entries[1]["resource"]["performer"][0]["reference"] == f"Practitioner/{doc}"
    assert entries[0]["response"]["location"].startswith(f"Patient/{pid}/_history/1")

    api.post(
        "Practitioner",
        {"resourceType": "Practitioner", "identifier": [{"system": "urn:npi", "value": "1"}]},
    )
    ambiguous = tx(
        {
            "resource": {
                **obs("Patient/" + pid),
                "performer": [{"reference": "Practitioner?identifier=urn:npi|1"}],
            },
            "request": {"method": "POST", "url": "Observation"},
        }
    )
    r = api.post("", ambiguous)
    assert r.status_code == 412
    assert r.get_json()["issue"][0]["expression"] == [
        "Bundle.entry[0].resource.performer[0].reference"
    ]
    dangling = tx(
        {"resource": obs("urn:uuid:nowhere"), "request": {"method": "POST", "url": "Observation"}}
    )
    assert api.post("", dangling).status_code == 400
    assert total(api, "Observation") == 1


def test_if_none_exist_in_entries(api: Api) -> None:
    entry = {
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": "7"}],
        },
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|7"},
    }
    first = api.post("", tx(entry)).get_json()["entry"][0]
    second = api.post("", tx(entry)).get_json()["entry"][0]
    assert first["response"]["status"] == "201 Created"
    assert second["response"]["status"] == "200 OK"
    assert first["response"]["location"] == second["response"]["location"]
    assert total(api, "Patient") == 1


def test_conditional_put_and_patch_in_transaction(api: Api) -> None:
    put = {
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": "9"}],
        },
        "request": {"method": "PUT", "url": "Patient?identifier=urn:mrn|9"},
    }
    created = api.post("", tx(put)).get_json()["entry"][0]
    assert created["response"]["status"] == "201 Created"
    pid = created["response"]["location"].split("/")[1]
    patch = base64.b64encode(
        orjson.dumps([{"op": "add", "path": "/gender", "value": "male"}])
    ).decode()
    bundle = tx(
        {
            "resource": {
                "resourceType": "Binary",
                "contentType": "application/json-patch+json",
                "data": patch,
            },
            "request": {"method": "PATCH", "url": f"Patient/{pid}"},
        }
    )
    r = api.post("", bundle)
    assert r.status_code == 200, r.get_json()
    assert api.get(f"Patient/{pid}").get_json()["gender"] == "male"


def test_batch_reports_each_entry(api: Api) -> None:
    bundle = tx(
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {"resourceType": "Patient", "gender": "mail"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "FLY", "url": "Patient"}},
        kind="batch",
    )
    r = api.post("", bundle)
    assert r.status_code == 200
    entries = r.get_json()["entry"]
    assert r.get_json()["type"] == "batch-response"
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"].startswith("400")
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"].startswith("404")
    assert entries[3]["response"]["status"].startswith("400")
    assert total(api, "Patient") == 1


@pytest.mark.parametrize(
    "bundle",
    [
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "document"},
        {"resourceType": "Bundle", "type": "transaction", "entry": "nope"},
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "POST"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "POST", "url": "Patient"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"request": {"method": "GET", "url": "http://elsewhere.example/Patient/1"}}],
        },
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "request": {"method": "PUT", "url": "Patient"},
                    "resource": {"resourceType": "Patient"},
                }
            ],
        },
    ],
)
def test_malformed_bundles_are_400(api: Api, bundle: dict[str, Any]) -> None:
    r = api.post("", bundle)
    assert r.status_code == 400
    assert r.get_json()["resourceType"] == "OperationOutcome"


def _put_observation(value: str, number: float) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{abs(hash(value)) % 10**12:012d}",
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "haemoglobin"},
            "identifier": [{"system": "urn:test:obs", "value": value}],
            "valueQuantity": {"value": number, "unit": "g/L"},
        },
        "request": {"method": "PUT", "url": f"Observation?identifier=urn:test:obs|{value}"},
    }


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_transactions_commit_together_and_each_sees_the_ones_before(
    services: Any, api: Api
) -> None:
    from hie.context import RequestContext

    ctx = RequestContext.system()
    responses = services.exchange.transactions(
        [
            (ctx, _transaction(_put_observation("a", 140), _put_observation("b", 6.1))),
            (ctx, _transaction(_put_observation("a", 141))),
        ]
    )
    assert [len(r["entry"]) for r in responses] == [2, 1]
    assert responses[0]["entry"][0]["response"]["status"] == "201 Created"
    # The second Bundle matched the first one's Observation and updated it.
    assert responses[1]["entry"][0]["response"]["status"] == "200 OK"
    found = api.get("Observation?identifier=urn:test:obs|a").get_json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["valueQuantity"]["value"] == 141
    assert found["entry"][0]["resource"]["meta"]["versionId"] == "2"
    assert total(api, "Observation") == 2


def test_transactions_are_all_or_nothing(services: Any, api: Api) -> None:
    from hie.context import RequestContext
    from hie.errors import FhirError

    ctx = RequestContext.system()
    bad = _put_observation("c", 1.0)
    bad["resource"]["status"] = "not-a-status"
    with pytest.raises(FhirError):
        services.exchange.transactions(
            [(ctx, _transaction(_put_observation("a", 140))), (ctx, _transaction(bad))]
        )
    # Two matches for one conditional update, found only while running: still nothing kept.
    for _ in range(2):
        assert api.post("Observation", _put_observation("dup", 1.0)["resource"]).status_code == 201
    with pytest.raises(FhirError):
        services.exchange.transactions(
            [
                (ctx, _transaction(_put_observation("a", 140))),
                (ctx, _transaction(_put_observation("dup", 2.0))),
            ]
        )
    assert total(api, "Observation") == 2
    assert api.get("Observation?identifier=urn:test:obs|a").get_json()["total"] == 0
