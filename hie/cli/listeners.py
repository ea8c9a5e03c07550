"""``hie dicom``: the adapters' listeners, each runnable alone or under ``hie serve``."""

from __future__ import annotations

import threading

import click

from adapters.dicom.cli import dicom_group
from adapters.dicom.registry import AeRegistry
from hie.app import build_services
from hie.settings import load_settings


def _open_registry() -> AeRegistry:
    services = build_services(load_settings())
    return services.dicom.registry


def _run_dicom() -> None:
    services = build_services(load_settings())
    dicom = services.dicom
    dicom.start(listen=True)
    host, port = dicom.address
    click.echo(f"hie: DICOM {dicom.config.ae_title} listening on {host}:{port}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        services.close()


dicom = dicom_group(open_registry=_open_registry, run=_run_dicom)
