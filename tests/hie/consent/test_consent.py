"""Consent beyond the matrix: withdrawal takes effect at once, break-glass, the 403
setting, the decision API, DICOM studies and the break-glass token (SQLite and PG)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from alembic import command
from alembic.config import Config
from click.testing import CliRunner
from flask import Flask

from hie.app import Services, build_services, create_app
from hie.audit.event import event_of
from hie.cli import main
from hie.consent.grants import Grant
from hie.context import RequestContext, Scopes
from hie.settings import Settings
from hie.storage.sql.migrate import MIGRATIONS, upgrade
from tests.hie.cli.test_importing import env_for
from tests.hie.consent.test_access_matrix import A, B, C, actor, consent, load, purpose, resources
from tests.support import Api

SCOPE = "system/*.cruds"
RECORDER = "system/*.cruds consent.record"  # may record and withdraw Consents
REASON = "unconscious patient, no relatives reachable"


def _services(db_url: str, tmp_path: Path, *, journal: bool = True, **policy: str) -> Services:
    path = tmp_path / "consent.toml"
    text_ = (Path(__file__).parents[3] / "config" / "consent.toml").read_text()
    for key, value in policy.items():
        text_ = text_.replace(f"\n{key} = ", f"\n{key} = {value}\n#")
    path.write_text(text_)
    settings = Settings().replace(
        database__url=db_url,
        data__dir=str(tmp_path / "var"),
        consent__policy=str(path),
        audit__journal=journal,
    )
    return build_services(settings)


@pytest.fixture
def built(db_url: str, tmp_path: Path) -> Iterator[tuple[Services, Flask]]:
    services = _services(db_url, tmp_path, platforms=f'["{C}"]')
    yield services, create_app(services=services)
    services.close()


def test_withdrawal_takes_effect_with_the_next_request(built: tuple[Services, Flask]) -> None:
    services, app = built
    client = app.test_client()
    a = Api(client, services.issuer.issue(subject="a", scope=RECORDER, ttl=600, organization=A))
    b = Api(client, services.issuer.issue(subject="b", scope=SCOPE, ttl=600, organization=B))
    load(a, resources("p1"))
    assert b.get("Observation/p1-obs").status_code == 404
    given = consent("c1", "p1", {"type": "permit", "actor": actor(B)})
    refused = b.put("Consent/c1", given)  # B may not write itself a permit
    assert refused.status_code == 403
    assert "consent.record" in refused.get_json()["issue"][0]["diagnostics"]
    assert (
        b.post(
            "",
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": given, "request": {"method": "PUT", "url": "Consent/c1"}}],
            },
        ).status_code
        == 403
    )
    assert a.put("Consent/c1", given).status_code == 201
    assert b.get("Observation/p1-obs").status_code == 200
    # the HIV result stays hidden: the permit does not name it
    assert b.get("Observation?subject=Patient/p1&_total=accurate").get_json()["total"] == 1
    assert a.put("Consent/c1", {**given, "status": "inactive"}).status_code == 200
    assert b.get("Observation/p1-obs").status_code == 404
    assert b.get("Observation?subject=Patient/p1&_total=accurate").get_json()["total"] == 0
    assert b.get("Patient/p1/$everything").status_code == 404
    # given again, then deleted: deletion withdraws too
    assert a.put("Consent/c1", given).status_code == 200
    assert b.get("Patient/p1").status_code == 200
    assert a.delete("Consent/c1").status_code == 204
    assert b.get("Patient/p1").status_code == 404


def test_break_glass_reads_everything_needs_a_reason_and_is_flagged(
    built: tuple[Services, Flask],
) -> None:
    services, app = built
    client = app.test_client()
    issue = services.issuer.issue
    a = Api(client, issue(subject="a", scope=RECORDER, ttl=600, organization=A))
    load(a, resources("p1"))
    load(a, [consent("c1", "p1", {"type": "deny"})])  # the resident refuses all sharing
    no_reason = issue(subject="b", scope=SCOPE, ttl=600, organization=B, purpose="BTG")
    assert Api(client, no_reason).get("Observation/p1-hiv").status_code == 404
    btg = Api(
        client,
        issue(subject="b", scope=SCOPE, ttl=600, organization=B, purpose="BTG", reason=REASON),
    )
    assert btg.get("Observation/p1-hiv").status_code == 200  # deny and sensitive: still read
    bundle = btg.get("Patient/p1/$everything").get_json()
    assert bundle["total"] == 6  # the Consent and the enterprise Patient too
    trail = services.exchange.audit_trail
    assert trail is not None
    events = [event_of(r.content, r.recorded) for r in trail.break_glass()]
    assert all(e["meta"]["security"][0]["code"] == "BTG" for e in events)
    granted = [e for e in events if e["outcome"] == "0"]
    assert {e["subtype"][0]["code"] for e in granted} == {"read", "everything"}
    assert all(e["purposeOfEvent"][0]["text"] == REASON for e in granted)
    # the attempt without a reason is on the list too, refused
    assert any("text" not in e["purposeOfEvent"][0] and e["outcome"] != "0" for e in events)


def test_hidden_reads_answer_403_when_configured(db_url: str, tmp_path: Path) -> None:
    services = _services(db_url, tmp_path, hidden_status="403")
    try:
        client = create_app(services=services).test_client()
        issue = services.issuer.issue
        a = Api(client, issue(subject="a", scope=RECORDER, ttl=600, organization=A))
        b = Api(client, issue(subject="b", scope=SCOPE, ttl=600, organization=B))
        load(a, resources("p1"))
        hidden = b.get("Observation/p1-obs")
        assert hidden.status_code == 403
        assert hidden.get_json()["resourceType"] == "OperationOutcome"
        assert "p1-obs" not in hidden.get_data(as_text=True)
        assert b.get("Observation/nothing-here").status_code == 404
    finally:
        services.close()


def _evaluate(api: Api, **values: Any) -> tuple[int, dict[str, Any]]:
    params: list[dict[str, Any]] = [{"name": "class", "valueCode": "Observation"}]
    for name, value in values.items():
        params.append({"name": name, **value})
    response = api.post("Consent/$evaluate", {"resourceType": "Parameters", "parameter": params})
    body = response.get_json()
    out = {p["name"]: p.get("valueCode") or p.get("valueString") for p in body.get("parameter", [])}
    return response.status_code, out


def test_the_decision_api_answers_permit_or_deny_with_the_rule(
    built: tuple[Services, Flask],
) -> None:
    services, app = built
    client = app.test_client()
    a = Api(client, services.issuer.issue(subject="a", scope=RECORDER, ttl=600, organization=A))
    load(a, resources("p1"))
    load(
        a,
        [
            consent(
                "c1",
                "p1",
                {"type": "permit", "actor": actor(C), "purpose": purpose("PUBHLTH")},
            )
        ],
    )
    platform = Api(
        client,
        services.issuer.issue(subject="c", scope="consent.evaluate", ttl=600, organization=C),
    )
    org_c = {"valueReference": {"reference": C}}
    status, out = _evaluate(
        platform,
        patient={"valueReference": {"reference": "Patient/p1"}},
        actor=org_c,
        purpose={"valueCode": "PUBHLTH"},
    )
    assert status == 200
    assert out["decision"] == "permit"
    assert "Consent/c1" in out["rule"]
    _, out = _evaluate(
        platform,
        identifier={"valueIdentifier": {"system": "urn:mrn", "value": "p1"}},
        actor=org_c,
        purpose={"valueCode": "HRESCH"},
    )
    assert out["decision"] == "deny"
    _, out = _evaluate(
        platform,
        patient={"valueReference": {"reference": "Patient/p1"}},
        actor=org_c,
        purpose={"valueCode": "PUBHLTH"},
        securityLabel={
            "valueCoding": {
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "HIV",
            }
        },
    )
    assert out["decision"] == "deny"
    assert "sensitive (HIV)" in out["rule"]
    _, out = _evaluate(
        platform,
        patient={"valueReference": {"reference": "Patient/p1"}},
        actor={"valueReference": {"reference": B}},
    )
    assert out["decision"] == "deny"
    assert set(out) == {"decision", "rule"}  # no clinical data
    reader = Api(client, services.issuer.issue(subject="r", scope="system/Patient.r", ttl=600))
    status, _ = _evaluate(
        reader, patient={"valueReference": {"reference": "Patient/p1"}}, actor=org_c
    )
    assert status == 403


def test_dicom_studies_follow_their_imaging_study(built: tuple[Services, Flask]) -> None:
    services, _ = built
    exchange = services.exchange
    a = RequestContext(actor="pacs-a", organization=A, scopes=Scopes(RECORDER))
    b = RequestContext(actor="ris-b", organization=B, scopes=Scopes(SCOPE))
    exchange.create(a, "Patient", {"resourceType": "Patient", "id": "p1"})
    patient_id = exchange.search(a, "Patient", []).entries[0].id
    exchange.create(
        a,
        "ImagingStudy",
        {
            "resourceType": "ImagingStudy",
            "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}],
            "subject": {"reference": f"Patient/{patient_id}"},
        },
    )
    assert exchange.visible_study_uids(a, ["1.2.3"]) == {"1.2.3"}
    assert exchange.visible_study_uids(b, ["1.2.3"]) == set()
    exchange.create(a, "Consent", consent("x", patient_id, {"type": "permit", "actor": actor(B)}))
    assert exchange.visible_study_uids(b, ["1.2.3"]) == {"1.2.3"}


def test_break_glass_tokens_need_a_reason_and_are_short_lived(
    settings: Settings, tmp_path: Path
) -> None:
    env = env_for(settings, tmp_path)
    runner = CliRunner()
    refused = runner.invoke(main, ["token", "--org", B, "--purpose", "BTG"], env=env)
    assert refused.exit_code != 0
    assert "--reason" in refused.output
    minted = runner.invoke(
        main,
        ["token", "--org", B, "--purpose", "BTG", "--reason", REASON, "--ttl", "86400"],
        env=env,
    )
    assert minted.exit_code == 0, minted.output
    claims = jwt.decode(minted.output.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] <= 3600
    assert claims["purpose"] == "BTG"


def test_migration_0010_marks_consents_stored_before_it(db_url: str, tmp_path: Path) -> None:
    # Group commit, not the audit journal: this service keeps running across a downgrade
    # below 0011, which drops the journal's table (a drain would fail, and fail closed).
    services = _services(db_url, tmp_path, journal=False, platforms=f'["{C}"]')
    try:
        _migration_0010_marks_consents_stored_before_it(services, create_app(services=services))
    finally:
        services.close()


def _migration_0010_marks_consents_stored_before_it(services: Services, app: Flask) -> None:
    client = app.test_client()
    a = Api(client, services.issuer.issue(subject="a", scope=RECORDER, ttl=600, organization=A))
    b = Api(client, services.issuer.issue(subject="b", scope=SCOPE, ttl=600, organization=B))
    load(a, resources("p1"))
    load(a, [consent("c1", "p1", {"type": "permit", "actor": actor(B)})])
    search = "Observation?subject=Patient/p1&_total=accurate"
    assert b.get(search).get_json()["total"] == 1
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with services.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")  # as stored before: no shape rows
    assert b.get(search).get_json()["total"] == 0
    upgrade(services.engine)
    assert b.get(search).get_json()["total"] == 1


def test_a_consent_on_the_enterprise_patient_covers_every_linked_record(
    built: tuple[Services, Flask],
) -> None:
    services, app = built
    client = app.test_client()
    a = Api(client, services.issuer.issue(subject="a", scope=RECORDER, ttl=600, organization=A))
    b = Api(client, services.issuer.issue(subject="b", scope=SCOPE, ttl=600, organization=B))
    load(a, resources("p1"))
    linked = services.exchange.search(RequestContext.system(), "Patient", [("link", "Patient/p1")])
    enterprise = linked.entries[0].id
    assert b.get("Observation/p1-obs").status_code == 404
    assert b.get(f"Patient/{enterprise}").status_code == 404
    assert a.get(f"Patient/{enterprise}").status_code == 200  # derived from A's record
    given = consent("ce", enterprise, {"type": "permit", "actor": actor(B)})
    assert a.put("Consent/ce", given).status_code == 201
    assert b.get("Observation/p1-obs").status_code == 200
    assert b.get(f"Patient/{enterprise}").status_code == 200
    found = b.get("Observation?subject=Patient/p1&_total=accurate").get_json()
    assert found["total"] == 1  # the HIV result is not named
    assert b.get("Patient?_id=p1").get_json()["total"] == 1


def test_card_presented_grants_open_the_record_for_treatment(
    built: tuple[Services, Flask],
) -> None:
    services, app = built
    client = app.test_client()
    a = Api(client, services.issuer.issue(subject="a", scope=RECORDER, ttl=600, organization=A))
    issue = services.issuer.issue
    b = Api(client, issue(subject="b", scope=SCOPE, ttl=600, organization=B))
    research = Api(
        client, issue(subject="b", scope=SCOPE, ttl=600, organization=B, purpose="HRESCH")
    )
    load(a, resources("p1"))
    now = datetime.now(UTC)
    assert b.get("Observation/p1-obs").status_code == 404
    services.exchange.record_grant(
        RequestContext.system(),
        Grant("Patient/p1", B, "TREAT", now - timedelta(hours=1), now + timedelta(hours=1)),
    )
    assert b.get("Observation/p1-obs").status_code == 200
    assert b.get("Observation/p1-hiv").status_code == 404  # sensitive: not by a grant
    assert b.get("Observation?subject=Patient/p1&_total=accurate").get_json()["total"] == 1
    assert research.get("Observation/p1-obs").status_code == 404  # treatment only
    load(a, [consent("c1", "p1", {"type": "deny", "actor": actor(B)})])
    assert b.get("Observation/p1-obs").status_code == 404  # a deny wins over the grant
