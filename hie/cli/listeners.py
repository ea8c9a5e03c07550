"""``hie dicom``: the adapters' listeners, each runnable alone or under ``hie serve``."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading

import click

from adapters.dicom.cli import dicom_group
from adapters.dicom.registry import AeRegistry
from hie.app import build_services
from hie.fhir.r4b import model_for
from hie.processes import Supervisor
from hie.settings import load_settings


def _open_registry() -> AeRegistry:
    services = build_services(load_settings())
    return services.dicom.registry


def _run_dicom(worker: bool, port: int | None) -> None:
    """The first process serves and keeps ImagingStudy current, and starts the others
    (``--worker``: serve only) on the port it bound."""
    settings = load_settings()
    processes = settings.dicom.processes or os.cpu_count() or 1
    services = build_services(settings)
    dicom = services.dicom
    dicom.config = dataclasses.replace(
        dicom.config,
        port=dicom.config.port if port is None else port,
        share_port=processes > 1 or worker,
    )
    if not worker:
        # Load the models an ImagingStudy write validates now, not while instances arrive.
        for name in ("Bundle", "ImagingStudy", "Patient", "Endpoint", "OperationOutcome"):
            model_for(name)
    dicom.start(listen=True, sync=not worker)
    host, bound = dicom.address
    # A worker that dies (killed, crashed) is started again; the new one adopts and
    # indexes what the dead one acknowledged but had not indexed yet.
    workers = Supervisor(name="hie dicom")
    if not worker:
        for _ in range(processes - 1):
            workers.add("dicom", "--worker", "--port", str(bound))
        workers.start()
        click.echo(
            f"hie: DICOM {dicom.config.ae_title} listening on {host}:{bound}"
            f" ({processes} process{'es' if processes > 1 else ''})"
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        workers.stop()
        services.close()


dicom = dicom_group(open_registry=_open_registry, run=_run_dicom)
