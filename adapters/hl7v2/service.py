"""The assembled HL7 v2 service: listener, group committer, workers, ACK delivery.

``hie mllp`` runs it alone; ``hie serve`` starts it next to HTTP and DICOM::

    service = Hl7Service(engine, exchange, Hl7Config.from_settings(settings))
    await service.start()      # inside the running event loop
    ...
    await service.stop()
"""

from __future__ import annotations

import asyncio
import logging
import threading

from sqlalchemy import Engine

from adapters.hl7v2.ack import AckBuilder
from adapters.hl7v2.appacks import deliver_application_acks
from adapters.hl7v2.committer import GroupCommitter
from adapters.hl7v2.config import Hl7Config
from adapters.hl7v2.inbox import Inbox, RawCipher
from adapters.hl7v2.intake import Intake, IntakeConfig, IntakeHandler
from adapters.hl7v2.mllp import ListenerConfig, MllpServer
from adapters.hl7v2.ports import Exchange
from adapters.hl7v2.senders import SenderRegistry
from adapters.hl7v2.strict import validate_strict
from adapters.hl7v2.worker import Worker
from terminology.conceptmaps import ConceptMaps, load_conceptmaps

log = logging.getLogger(__name__)


class Hl7Service:
    def __init__(
        self,
        engine: Engine,
        exchange: Exchange,
        config: Hl7Config,
        *,
        maps: ConceptMaps | None = None,
        run_workers: bool = True,
        raw_cipher: RawCipher | None = None,
    ) -> None:
        self.config = config
        self.inbox = Inbox(engine, keep_connection=True, raw_cipher=raw_cipher)
        self.registry = SenderRegistry(engine)
        self.acks = AckBuilder(config.application, config.facility)
        self.maps = maps if maps is not None else load_conceptmaps(*config.conceptmaps)
        self.intake = Intake(
            self.registry,
            self.acks,
            IntakeConfig(config.accept_unregistered, config.defaults, config.max_message_bytes),
            strict_validator=validate_strict,
        )
        self.committer = GroupCommitter(self.inbox)
        self.server = MllpServer(
            IntakeHandler(self.intake, self.committer),
            ListenerConfig(
                host=config.host,
                port=config.port,
                read_timeout=config.read_timeout,
                idle_timeout=config.idle_timeout,
                max_message_bytes=config.max_message_bytes,
                max_connections=config.max_connections,
                ssl=config.ssl_context(),
            ),
        )
        worker_config = config.worker_config()
        self.workers = [
            Worker(
                self.inbox,
                self.registry,
                exchange,
                name=f"hl7-worker-{i}-{id(self):x}",
                maps=self.maps,
                ack_builder=self.acks,
                config=worker_config,
            )
            for i in range(config.workers if run_workers else 0)
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        self.committer.start()
        await self.server.start()
        for worker in self.workers:
            thread = threading.Thread(
                target=worker.run, args=(self._stop,), name=worker.name, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(target=self._deliver_acks, name="hl7-app-acks", daemon=True)
        thread.start()
        self._threads.append(thread)
        log.info("hl7: MLLP listening on %s:%d", self.config.host, self.server.port)

    async def stop(self) -> None:
        await self.server.close()
        self.committer.stop()
        self._stop.set()
        await asyncio.to_thread(self._join)
        self.inbox.close()

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def _deliver_acks(self) -> None:
        while not self._stop.wait(5.0):
            try:
                deliver_application_acks(self.inbox, self.registry)
            except Exception:
                log.exception("hl7: application ACK delivery failed")

    async def run_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
