"""Card API fixtures: the real application on SQLite and PostgreSQL, a settable clock,
and bearer tokens per scope and organisation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from card.resident_id import check_character
from hie.app import Services, build_services, create_app
from hie.settings import Settings

ORG = "Organization/fy-hospital-1"
OTHER_ORG = "Organization/fy-hospital-2"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def resident_id(region: str = "510703", birth: str = "19800101", seq: int = 123) -> str:
    first17 = f"{region}{birth}{seq:03d}"
    return first17 + check_character(first17)


def holder(seq: int = 123, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resident_id": resident_id(seq=seq),
        "name": "张伟",
        "gender": "male" if seq % 2 else "female",
        "birth_date": "1980-01-01",
        "phone": "13812345678",
        "address": "四川省绵阳市涪城区临园路1号",
    }
    body.update(extra)
    return body


@dataclass
class CardApi:
    client: FlaskClient
    services: Services

    def token(self, scope: str, org: str | None = ORG, subject: str = "reader-1") -> str:
        return self.services.issuer.issue(subject=subject, scope=scope, ttl=3600, organization=org)

    def call(
        self, method: str, path: str, body: Any = None, *, scope: str, org: str | None = ORG
    ) -> Any:
        return self.client.open(
            "/card/v1" + path,
            method=method,
            data=orjson.dumps(body) if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.token(scope, org)}",
                "Content-Type": "application/json",
            },
        )

    def issue(self, body: dict[str, Any]) -> dict[str, Any]:
        res = self.call("POST", "/cards", body, scope="card.issue")
        assert res.status_code == 201, res.get_json()
        out: dict[str, Any] = res.get_json()
        return out


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def card_services(db_url: str, tmp_path: Path, clock: Clock) -> Iterator[Services]:
    settings = Settings().replace(database__url=db_url, data__dir=str(tmp_path / "var"))
    built = build_services(settings, clock=clock)
    yield built
    built.close()


@pytest.fixture
def card_app(card_services: Services) -> Flask:
    return create_app(services=card_services)


@pytest.fixture
def card_api(card_app: Flask, card_services: Services) -> CardApi:
    return CardApi(card_app.test_client(), card_services)


def problem_type(res: Any) -> str:
    assert res.headers["Content-Type"] == "application/problem+json", res.data
    body = orjson.loads(res.data)
    assert body["status"] == res.status_code
    return str(body["type"]).rsplit("/", 1)[-1]
