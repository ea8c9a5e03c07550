"""A listener process for the crash test: ``python hl7_server_main.py DB_PATH``.

Prints ``READY <port>`` once listening; storage only (no workers), SQLite WAL + FULL.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from adapters.hl7v2.config import Hl7Config
from adapters.hl7v2.db import make_engine
from adapters.hl7v2.schema import metadata
from adapters.hl7v2.service import Hl7Service


class _NoExchange:
    def transaction(self, ctx: Any, bundle: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("no workers here")

    def transactions(self, items: Any) -> list[dict[str, Any]]:
        raise AssertionError("no workers here")


async def main(path: str) -> None:
    engine = make_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    service = Hl7Service(engine, _NoExchange(), Hl7Config(port=0), run_workers=False)
    await service.start()
    print(f"READY {service.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
