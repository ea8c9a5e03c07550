"""The adapter's settings come from hie.settings (with defaults for keys not there yet)."""

from __future__ import annotations

from adapters.hl7v2.config import Hl7Config
from hie.settings import Settings


def test_from_settings() -> None:
    settings = Settings().replace(host="0.0.0.0", mllp__port=3575, hl7__accept_unregistered=True)
    config = Hl7Config.from_settings(settings)
    assert (config.host, config.port, config.accept_unregistered) == ("0.0.0.0", 3575, True)
    assert config.defaults.charset == "GB18030"
    assert config.defaults.tz_offset == "+08:00"
    assert config.read_timeout == 30.0
    assert config.ssl_context() is None


def test_every_worker_gets_the_group_commit_size() -> None:
    assert Hl7Config.from_settings(Settings()).worker_config().commit_batch == 8
    settings = Settings().replace(hl7__commit_batch=1)
    assert Hl7Config.from_settings(settings).worker_config().commit_batch == 1
