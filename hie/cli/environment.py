"""What the adapters' commands find in ``click.Context.obj``: settings, engine, exchange.

Services are built on first use, once per command, so `hie hl7 sender list` does not pay
for anything it does not touch.
"""

from __future__ import annotations

from functools import cached_property

from sqlalchemy import Engine

from adapters.hl7v2.db import make_engine
from hie.app import Services, build_services
from hie.exchange import Exchange
from hie.exchange.protection import BytesSealer
from hie.settings import Settings, load_settings


class CliEnvironment:
    @cached_property
    def settings(self) -> Settings:
        return load_settings()

    @cached_property
    def services(self) -> Services:
        return build_services(self.settings)

    @cached_property
    def _adapter_engine(self) -> Engine:
        database = self.settings.database
        return make_engine(database.url, synchronous=database.sqlite_synchronous)

    def engine(self) -> Engine:
        """The engine for the HL7 inbox and sender tables (every transaction immediate)."""
        return self._adapter_engine

    def exchange(self) -> Exchange:
        return self.services.exchange

    def raw_cipher(self) -> BytesSealer | None:
        return self.services.exchange.raw_sealer("hl7.inbox.raw")
