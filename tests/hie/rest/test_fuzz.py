"""Hostile input at every HTTP way in (FHIR, /auth, /ui): never a 5xx, never a leak.

Property-based (hypothesis) requests go through the whole WSGI application; the
injection tests check that SQL and FHIRPath fragments in search parameters are plain
values: they match nothing they should not, and the tables are intact afterwards.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hie.app import Services
from tests.hie.auth.helpers import register
from tests.support import Api

SQL = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "x'; DROP TABLE resource; --",
    "1; DELETE FROM resource",
    '" OR ""="',
    "') UNION SELECT content FROM resource --",
    "%' OR type LIKE '%",
    "\\'; SELECT pg_sleep(5); --",
    "1) OR (1=1",
    "x\x00y",
]
FHIRPATH = [
    "name.where(true)",
    "Patient.name | Patient.id",
    "')or(true",
    "%resource",
    "$this",
    "iif(true, 'a', 'b')",
    "name.exists() or true",
    "{{7*7}}",
    "*",
    "%",
    "_",
]
PAYLOADS = SQL + FHIRPATH
PARAMS = [
    "name",
    "family",
    "given",
    "identifier",
    "_id",
    "gender",
    "birthdate",
    "address",
    "_lastUpdated",
    "_tag",
    "_text",
    "name:contains",
    "name:exact",
    "identifier:of-type",
    "general-practitioner:Practitioner.name",
    "_has:Observation:subject:code",
    "_sort",
    "_count",
    "_include",
    "_revinclude",
    "_elements",
    "_summary",
    "_total",
    "_cursor",
]
TYPES = ["Patient", "Observation", "Encounter", "Consent", "AuditEvent", "NotAType", "patient"]
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

texts = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)


@pytest.fixture
def seeded(api: Api) -> list[str]:
    ids = []
    for family in ("Zhang", "Li"):
        response = api.post("Patient", {"resourceType": "Patient", "name": [{"family": family}]})
        assert response.status_code == 201
        ids.append(str(response.get_json()["id"]))
    return ids


def no_server_error(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.get_data(as_text=True))


def patient_count(api: Api) -> int:
    body = api.get("Patient?_total=accurate&_count=0").get_json()
    return int(body["total"])


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_strings_in_search_values_are_plain_values(
    api: Api, seeded: list[str], payload: str
) -> None:
    before = patient_count(api)  # the seeded ones and their enterprise records
    for param in PARAMS:
        query = urlencode([(param, payload)])
        response = api.get(f"Patient?{query}")
        no_server_error(response)
        if response.status_code != 200 or (param.startswith("_") and param != "_id"):
            continue
        body = response.get_json()
        assert body["resourceType"] == "Bundle"
        # No payload is a name, identifier, id or date of these patients: nothing matches.
        assert [e for e in body.get("entry", []) if e["search"]["mode"] == "match"] == [], (
            param,
            payload,
        )
    assert patient_count(api) == before


@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_strings_in_names_paths_and_types_are_harmless(
    api: Api, seeded: list[str], payload: str
) -> None:
    quoted = quote(payload, safe="")
    before = patient_count(api)
    for path in (
        f"Patient?{quoted}=x",
        f"{quoted}",
        f"{quoted}?name=Zhang",
        f"Patient/{quoted}",
        f"Patient/{seeded[0]}/_history/{quoted}",
        f"Patient/{quoted}/$everything",
        f"Patient?name={quoted}&_sort={quoted}",
    ):
        no_server_error(api.get(path))
    no_server_error(api.post("Patient/_search", raw=urlencode({"name": payload}).encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"}))  # fmt: skip
    assert patient_count(api) == before


def test_sql_wildcards_are_not_wildcards(api: Api, seeded: list[str]) -> None:
    for value in ("%", "_", "Zh%", "L_", "*"):
        body = api.get(f"Patient?name={quote(value)}").get_json()
        assert body.get("entry", []) == [], value
    found = api.get("Patient?name=Zh").get_json()["entry"]
    assert found
    assert {e["resource"]["name"][0]["family"] for e in found} == {"Zhang"}


@SETTINGS
@given(
    rtype=st.one_of(st.sampled_from(TYPES), st.text(max_size=12)),
    params=st.lists(st.tuples(st.one_of(st.sampled_from(PARAMS), texts), texts), max_size=4),
)
def test_fuzzed_searches_never_fail_the_server(
    api: Api, rtype: str, params: list[tuple[str, str]]
) -> None:
    path = quote(rtype, safe="") + "?" + urlencode(params)
    no_server_error(api.get(path))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.one_of(st.sampled_from(["resourceType", "id", "name"]), texts), children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@SETTINGS
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET"]),
    path=st.sampled_from(["", "Patient", "Patient/1", "Patient/$validate", "Observation/x"]),
    body=json_values,
    content_type=st.sampled_from(
        ["application/fhir+json", "application/json-patch+json", "text/plain", ""]
    ),
)
def test_fuzzed_writes_never_fail_the_server(
    api: Api, method: str, path: str, body: Any, content_type: str
) -> None:
    raw = json.dumps(body).encode()  # not orjson: big integers must reach the server too
    response = api.request(method, path, raw=raw, headers={"Content-Type": content_type})
    no_server_error(response)


@pytest.fixture
def web(app: Flask) -> FlaskClient:
    return app.test_client()


@SETTINGS
@given(header=st.one_of(texts, st.builds(lambda t: "Bearer " + t, texts)))
def test_fuzzed_authorization_headers_are_401(web: FlaskClient, header: str) -> None:
    try:
        headers = {"Authorization": header}
        for path in ("/fhir/Patient", "/fhir/Patient/1"):
            response = web.get(path, headers=headers)
            assert response.status_code == 401, response.get_data(as_text=True)
    except ValueError:
        pass  # a header value werkzeug itself cannot send (newlines)


@SETTINGS
@given(
    form=st.dictionaries(
        st.one_of(
            st.sampled_from(["grant_type", "client_assertion_type", "client_assertion", "scope"]),
            texts,
        ),
        texts,
        max_size=5,
    )
)
def test_fuzzed_token_requests_get_oauth_errors(
    web: FlaskClient, services: Services, form: dict[str, str]
) -> None:
    response = web.post("/auth/token", data=form)
    assert response.status_code in (400, 401)
    assert response.get_json()["error"] in (
        "invalid_request",
        "invalid_client",
        "unsupported_grant_type",
    )


@pytest.fixture
def client_form(services: Services) -> dict[str, str]:
    return register(services).form()


@SETTINGS
@given(field=st.sampled_from(["grant_type", "client_assertion", "scope"]), value=texts)
def test_fuzzing_one_field_of_a_good_request_never_fails_the_server(
    web: FlaskClient, client_form: dict[str, str], field: str, value: str
) -> None:
    response = web.post("/auth/token", data={**client_form, field: value})
    no_server_error(response)
    if response.status_code == 200:  # only a changed scope can still succeed, once
        assert field == "scope"


@SETTINGS
@given(
    path=st.one_of(st.sampled_from(["/ui/", "/ui/login", "/ui/patients", "/ui/logout"]), texts),
    form=st.dictionaries(
        st.one_of(st.sampled_from(["login", "password", "code", "csrf_token"]), texts),
        texts,
        max_size=4,
    ),
    method=st.sampled_from(["GET", "POST"]),
)
def test_fuzzed_ui_requests_never_fail_the_server(
    web: FlaskClient, path: str, form: dict[str, str], method: str
) -> None:
    if not path.startswith("/"):
        path = "/ui/" + quote(path, safe="")
    response = web.open(path, method=method, data=form if method == "POST" else None,
                        query_string=form if method == "GET" else None)  # fmt: skip
    no_server_error(response)
    assert response.status_code != 200 or method == "GET"  # no POST signs anyone in


def test_nul_characters_are_bad_requests(api: Api, seeded: list[str]) -> None:
    for query in ("name=x%00y", "x%00y=1", "_sort=na%00me", "identifier=a%00|b"):
        response = api.get(f"Patient?{query}")
        assert response.status_code == 400, query
        assert "NUL" in response.get_json()["issue"][0]["diagnostics"]
    everything = api.get(f"Patient/{seeded[0]}/$everything?_type=Obs%00ervation")
    assert everything.status_code == 400
    conditional = api.post(
        "Patient", {"resourceType": "Patient"}, headers={"If-None-Exist": "identifier=a%00b"}
    )
    assert conditional.status_code == 400


def test_nul_characters_in_bodies_are_bad_requests(api: Api, seeded: list[str]) -> None:
    nul = {"resourceType": "Patient", "name": [{"family": "a\x00b"}]}
    assert api.post("Patient", nul).status_code == 400
    assert api.put(f"Patient/{seeded[0]}", {**nul, "id": seeded[0]}).status_code == 400
    patch = [{"op": "add", "path": "/gender", "value": "\x00"}]
    assert api.patch(f"Patient/{seeded[0]}", patch).status_code == 400
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": nul, "request": {"method": "POST", "url": "Patient"}}],
    }
    response = api.post("", bundle)
    assert response.status_code == 400
    assert "NUL" in response.get_json()["issue"][0]["diagnostics"]
    # A backslash followed by the text "u0000" is an ordinary string.
    literal = {"resourceType": "Patient", "name": [{"family": "a\\u0000b"}]}
    created = api.post("Patient", literal)
    assert created.status_code == 201
    assert created.get_json()["name"][0]["family"] == "a\\u0000b"
