"""Fuzzing a real `hie serve` over sockets: random requests at /fhir, /auth and /ui, with
and without a valid token, never get a 5xx, and the server stays up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import RunningServer, running_server, server_env

PATHS = [
    "/fhir/{t}",
    "/fhir/{t}/{x}",
    "/fhir/{t}/{x}/_history",
    "/fhir/{t}/{x}/_history/{x}",
    "/fhir/{t}/_search",
    "/fhir/Patient/{x}/$everything",
    "/fhir/Patient/{x}/{t}",
    "/fhir/{t}/$validate",
    "/fhir",
    "/auth/token",
    "/.well-known/smart-configuration",
    "/ui/login",
    "/ui/patients",
    "/ui/logout",
    "/{x}",
]
TYPES = ["Patient", "Observation", "Consent", "NotAType"]
HOSTILE = ["' OR '1'='1", "x'; DROP TABLE resource; --", "name.where(true)", "%", "..", "é"]

text = st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=20))


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(server_env(db_url, tmp_path / "var")) as running:
        yield running


@pytest.mark.slow
def test_random_requests_never_get_a_server_error(server: RunningServer) -> None:
    token = server.token()
    http = requests.Session()

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        template=st.sampled_from(PATHS),
        rtype=st.one_of(st.sampled_from(TYPES), text),
        segment=text,
        query=st.lists(st.tuples(text, text), max_size=3),
        auth=st.sampled_from(["valid", "none", "garbage"]),
        body=st.one_of(st.none(), st.binary(max_size=200), text.map(str.encode)),
        content_type=st.sampled_from(
            [
                "application/fhir+json",
                "application/x-www-form-urlencoded",
                "application/json-patch+json",
                "text/html",
            ]
        ),
    )
    def check(
        method: str,
        template: str,
        rtype: str,
        segment: str,
        query: list[tuple[str, str]],
        auth: str,
        body: bytes | None,
        content_type: str,
    ) -> None:
        path = template.format(t=quote(rtype, safe=""), x=quote(segment, safe=""))
        headers = {"Content-Type": content_type}
        if auth == "valid":
            headers["Authorization"] = f"Bearer {token}"
        elif auth == "garbage":
            headers["Authorization"] = "Bearer " + quote(segment)
        response = http.request(
            method, server.base + path, params=query, data=body, headers=headers, timeout=30
        )
        assert response.status_code < 500, (method, path, query, response.text[:300])

    check()
    assert server.process.poll() is None
    assert requests.get(server.base + "/healthz", timeout=10).status_code == 200
