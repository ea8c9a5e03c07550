"""Break-glass is time-limited: ``break_glass_ttl`` (config/consent.toml) caps the token
minted by ``hie token`` and ``hie token --client``, and the decision point stops
honouring a BTG token that long after its issue, whatever lifetime it was minted with
(SQLite and PostgreSQL, real tokens over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner

from hie.app import Services, build_services, create_app
from hie.cli import main
from hie.settings import Settings
from tests.hie.cli.test_importing import env_for
from tests.hie.consent.test_access_matrix import A, B, load, resources
from tests.support import Api

REASON = "unconscious patient, no relatives reachable"


def _policy(tmp_path: Path, ttl: int) -> Path:
    text = (Path(__file__).parents[3] / "config" / "consent.toml").read_text()
    path = tmp_path / "consent.toml"
    path.write_text(text.replace("\nbreak_glass_ttl = 3600", f"\nbreak_glass_ttl = {ttl}"))
    return path


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(db_url: str, tmp_path: Path, clock: Clock) -> Iterator[Services]:
    settings = Settings().replace(
        database__url=db_url,
        data__dir=str(tmp_path / "var"),
        consent__policy=str(_policy(tmp_path, 300)),
    )
    services = build_services(settings, clock=clock)
    yield services
    services.close()


def test_break_glass_lapses_after_its_limit_whatever_the_token_lifetime(
    timed: Services, clock: Clock
) -> None:
    client = create_app(services=timed).test_client()
    a = Api(
        client, timed.issuer.issue(subject="a", scope="system/*.cruds", ttl=600, organization=A)
    )
    load(a, resources("p1"))
    # Minted for a day, around every cap: the token stays valid, break-glass does not.
    btg = timed.issuer.issue(
        subject="b", scope="system/*.rs", ttl=86400, organization=B, purpose="BTG", reason=REASON
    )
    b = Api(client, btg)
    assert b.get("Observation/p1-hiv").status_code == 200
    assert b.get("Observation?subject=Patient/p1&_total=accurate").get_json()["total"] == 2
    clock.now += timedelta(seconds=299)
    assert b.get("Observation/p1-obs").status_code == 200
    clock.now += timedelta(seconds=2)
    assert b.get("Observation/p1-obs").status_code == 404
    assert b.get("Observation?subject=Patient/p1&_total=accurate").get_json()["total"] == 0
    assert b.get("Patient/p1/$everything").status_code == 404
    # the token itself is still good for what B may see anyway
    assert b.get("Organization?_count=1").status_code == 200


def test_hie_token_caps_break_glass_for_clients_too(settings: Settings, tmp_path: Path) -> None:
    env = {**env_for(settings, tmp_path), "HIE_CONSENT_POLICY": str(_policy(tmp_path, 120))}
    runner = CliRunner()
    added = runner.invoke(
        main,
        [
            "client",
            "add",
            "er-b",
            "--org",
            B,
            "--scope",
            "system/*.rs",
            "--generate-key",
            str(tmp_path / "er-b.pem"),
        ],
        env=env,
    )
    assert added.exit_code == 0, added.output
    no_reason = runner.invoke(main, ["token", "--client", "er-b", "--purpose", "BTG"], env=env)
    assert no_reason.exit_code != 0
    assert "--reason" in no_reason.output
    for args in (
        ["--client", "er-b"],
        ["--org", B],
    ):
        minted = runner.invoke(
            main,
            ["token", *args, "--purpose", "BTG", "--reason", REASON, "--ttl", "86400"],
            env=env,
        )
        assert minted.exit_code == 0, minted.output
        claims = jwt.decode(minted.output.strip(), options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 120, args
        assert claims["purpose"] == "BTG"
        assert claims["reason"] == REASON
    # other purposes keep the lifetime asked for
    treat = runner.invoke(
        main, ["token", "--client", "er-b", "--purpose", "TREAT", "--ttl", "900"], env=env
    )
    claims = jwt.decode(treat.output.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
