"""`hie serve` over real sockets: the official fhirclient, concurrency across worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from fhirclient import client as fhir_client
from fhirclient.models.fhirelementfactory import FHIRElementFactory
from fhirclient.models.patient import Patient

from tests.support import RunningServer, running_server, server_env

BUNDLES = Path(__file__).parents[2] / "fixtures" / "fhir" / "synthea-bundles"
GOOD_BUNDLES = [
    "2fda17e1-68f5-4450-bb37-775162f27530.transaction.json",
    "8effc322-4f03-4dd6-89dc-810af24f9046.transaction.json",
    "Emmie273_Kovacek682_b53c3433-4da7-426e-a822-4db32e9c3d9f.transaction.json",
    "uscore_bundle_patient_85.json",
]


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(server_env(db_url, tmp_path / "var")) as running:
        yield running


def session(server: RunningServer) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {server.token()}"
    s.headers["Content-Type"] = "application/fhir+json"
    return s


def test_metadata_without_token_and_401_with_challenge(server: RunningServer) -> None:
    assert requests.get(server.fhir + "/metadata", timeout=10).json()["fhirVersion"] == "4.0.1"
    r = requests.get(server.fhir + "/Patient", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(server.base + "/healthz", timeout=10).json() == {"status": "ok"}


def test_fhirclient_create_read_search(server: RunningServer) -> None:
    smart = fhir_client.FHIRClient(settings={"app_id": "hie-test", "api_base": server.fhir})
    smart.server.session.headers["Authorization"] = f"Bearer {server.token()}"
    patient = Patient(
        {
            "name": [{"family": "王", "given": ["小东"]}],
            "gender": "female",
            "identifier": [{"system": "urn:mrn", "value": "42"}],
        }
    )
    created = patient.create(smart.server)
    assert created is not None
    found = Patient.where(struct={"identifier": "urn:mrn|42"}).perform_resources(smart.server)
    assert len(found) == 1
    assert found[0].name[0].family == "王"
    again = Patient.read(found[0].id, smart.server)
    assert again.gender == "female"


def test_parallel_conditional_creates_make_exactly_one(server: RunningServer) -> None:
    s = session(server)
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "race"}]}

    def create(_: int) -> int:
        r = s.post(
            server.fhir + "/Patient",
            json=body,
            headers={"If-None-Exist": "identifier=urn:mrn|race"},
            timeout=30,
        )
        return r.status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(create, range(16)))
    assert sorted(statuses) == [200] * 15 + [201]
    found = s.get(server.fhir + "/Patient?identifier=urn:mrn|race", timeout=10).json()
    assert found["total"] == 1


def test_parallel_updates_with_same_if_match_have_one_winner(server: RunningServer) -> None:
    s = session(server)
    s.put(
        server.fhir + "/Patient/contested",
        json={"resourceType": "Patient", "id": "contested"},
        timeout=10,
    )

    def update(n: int) -> int:
        body = {
            "resourceType": "Patient",
            "id": "contested",
            "gender": ["male", "female"][n % 2],
            "birthDate": f"19{n + 10}",
        }
        r = s.put(
            server.fhir + "/Patient/contested", json=body, headers={"If-Match": 'W/"1"'}, timeout=30
        )
        return r.status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(update, range(16)))
    assert sorted(statuses) == [200] + [412] * 15
    assert s.get(server.fhir + "/Patient/contested", timeout=10).headers["ETag"] == 'W/"2"'


def test_everything_written_parses_with_fhirclient_strict(server: RunningServer) -> None:
    s = session(server)
    for name in GOOD_BUNDLES:
        r = s.post(server.fhir, data=(BUNDLES / name).read_bytes(), timeout=120)
        assert r.status_code == 200, r.text[:500]
    url: str | None = server.fhir + "/_history?_count=500"
    parsed = 0
    while url:
        page: dict[str, Any] = s.get(url, timeout=60).json()
        for entry in page.get("entry", []):
            resource = entry["resource"]
            model = FHIRElementFactory.instantiate(resource["resourceType"], resource)
            assert model.id == resource["id"]
            parsed += 1
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert parsed > 1000


def test_readme_walkthrough_runs(server: RunningServer, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's fhirclient walk-through works as written against a real server."""
    import re

    readme = (Path(__file__).parents[3] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code is not None
    source = code.group(1).replace("http://127.0.0.1:8080/fhir", server.fhir)
    exec(compile(source, "README.md", "exec"), {"TOKEN": server.token()})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith(" 王")
    assert re.fullmatch(r"Patient/[0-9a-f-]{36}/_history/1", printed[1])

    curls = re.findall(r"curl -s\S* \"\$\{H\[@\]\}\" -X POST \$FHIR -d '(.*?)'\n", readme, re.S)
    assert curls, "the README posts a transaction Bundle with curl"
    s = session(server)
    r = s.post(server.fhir, data=curls[0].encode(), timeout=30)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "201 Created"]


def test_worker_app_leaves_its_startup_objects_out_of_collections(
    tmp_path: Path,
) -> None:
    """A full collection over the app's long-lived objects stalls a request for 0.1-1 s."""
    import subprocess
    import sys

    env = server_env(f"sqlite:///{tmp_path}/hie.db", tmp_path / "var")
    script = "import gc\nfrom hie.app import wsgi_app\nwsgi_app()\nprint(gc.get_freeze_count())\n"
    subprocess.run(
        [sys.executable, "-m", "hie", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True
    )
    assert int(out.stdout.split()[-1]) > 100_000
