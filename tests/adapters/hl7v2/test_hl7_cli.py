"""The hl7 and mllp commands, with the environment object the hie command provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click
from click.testing import CliRunner
from sqlalchemy import Engine

from adapters.hl7v2.cli import hl7, mllp
from adapters.hl7v2.ports import Exchange
from hie.errors import Unavailable, Unprocessable
from hie.settings import Settings
from tests.adapters.hl7v2.hl7_support import FIXTURES, FakeExchange, sqlite_engine_at


@dataclass
class Env:
    db: Engine
    fhir: FakeExchange = field(default_factory=FakeExchange)
    settings: Settings = field(default_factory=Settings)

    def engine(self) -> Engine:
        return self.db

    def exchange(self) -> Exchange:
        return self.fhir

    def raw_cipher(self) -> None:
        return None


@click.group()
def hie() -> None:
    """Stands in for the hie command."""


hie.add_command(hl7)
hie.add_command(mllp)


def invoke(env: Env, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(hie, list(args), obj=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_sender_add_and_list(tmp_path: Path) -> None:
    env = Env(sqlite_engine_at(tmp_path / "cli.db"))
    code, out = invoke(
        env, "hl7", "sender", "add", "--app", "HIS", "--facility", "MYZX",
        "--org", "Organization/myzx", "--charset", "GB18030", "--tz", "+08:00",
    )  # fmt: skip
    assert code == 0
    assert out.startswith("registered 1: HIS|MYZX -> Organization/myzx, charset GB18030")
    code, out = invoke(
        env, "hl7", "sender", "add", "--app", "HIS", "--facility", "MYZX", "--org", "Organization/x"
    )
    assert code == 1
    assert "already registered" in out
    code, out = invoke(env, "hl7", "sender", "list")
    assert out.count("HIS|MYZX") == 1


def test_import_maps_and_errors_and_replay(tmp_path: Path) -> None:
    env = Env(sqlite_engine_at(tmp_path / "cli.db"))
    invoke(
        env,
        "hl7",
        "sender",
        "add",
        "--app",
        "",
        "--facility",
        "ABCHS",
        "--org",
        "Organization/a",
        "--charset",
        "ASCII",
    )
    invoke(
        env,
        "hl7",
        "sender",
        "add",
        "--app",
        "GHH LAB",
        "--facility",
        "ELAB-3",
        "--org",
        "Organization/b",
    )
    env.fhir.fail_with = Unavailable("down for maintenance")
    code, out = invoke(
        env, "hl7", "import", str(FIXTURES / "batch/pyhl7__sample_file1.hl7"),
        str(FIXTURES / "valid/pyhl7__sample_hl7.hl7"),
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    # MSH-15/16 are NE|NE: enhanced mode, so the commit code CA.
    assert lines[0].endswith("#1\tADT^A04\t12334456778890\tCA\tstored\t")
    assert "duplicate of inbox message 1" in lines[2]
    assert "\tAE\tstored\tPID-7: date/time of birth: '196203520'" in lines[3]
    env.fhir.fail_with = None
    code, out = invoke(env, "hl7", "errors")
    assert out == "no failed messages\n"  # still waiting for a retry, not failed
    code, out = invoke(env, "hl7", "errors", "--rejected")
    assert "PID-7: date/time of birth" in out
    code, out = invoke(env, "hl7", "replay", "3")
    assert code == 1
    assert "3: was refused at intake" in out
    code, out = invoke(env, "hl7", "status")
    assert "received\t2" in out


def test_errors_then_replay_failed(tmp_path: Path) -> None:
    env = Env(sqlite_engine_at(tmp_path / "cli.db"))
    invoke(
        env, "hl7", "sender", "add", "--app", "", "--facility", "ABCHS", "--org", "Organization/a"
    )
    env.fhir.fail_with = Unprocessable("Patient: a business rule was broken")
    code, out = invoke(env, "hl7", "import", str(FIXTURES / "batch/pyhl7__sample_batch.hl7"))
    assert out.splitlines()[-1] == "1\tfailed\texchange 422: Patient: a business rule was broken"
    code, out = invoke(env, "hl7", "errors")
    assert "\tfailed\t" in out
    assert out.rstrip().endswith("exchange 422: Patient: a business rule was broken")
    env.fhir.fail_with = None
    code, out = invoke(env, "hl7", "replay", "--failed")
    assert code == 0
    assert out.splitlines() == ["queued 1 message(s) for mapping", "1\tmapped"]
    assert len(env.fhir.all("Patient")) == 1
    assert invoke(env, "hl7", "errors")[1] == "no failed messages\n"
