"""The DICOM network services: one pynetdicom application entity, served on a thread.

Accepted associations get ``TCP_NODELAY`` (pynetdicom never sets it; with Nagle and
delayed ACK every small instance waits ~50 ms for its response). Storage accepts every
storage SOP class pynetdicom knows with every transfer syntax pydicom knows, keeping the
sender's preference order, so nothing is ever transcoded on the way in.
"""

from __future__ import annotations

import copy
import socket
import socketserver
import threading
from dataclasses import dataclass

import pydicom.uid
from pynetdicom import AE, _config, evt
from pynetdicom.events import EventHandlerType
from pynetdicom.presentation import AllStoragePresentationContexts, PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from adapters.dicom import handlers
from adapters.dicom.files import InstanceFiles
from adapters.dicom.ingest import Ingest
from adapters.dicom.ports import Records
from adapters.dicom.query import QueryEngine
from adapters.dicom.registry import AeRegistry

# Uncompressed first: when a sender proposes several syntaxes in one context, pynetdicom
# keeps the sender's order, so these lists only say what is acceptable.
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            pydicom.uid.ExplicitVRLittleEndian,
            pydicom.uid.ImplicitVRLittleEndian,
            pydicom.uid.DeflatedExplicitVRLittleEndian,
            pydicom.uid.ExplicitVRBigEndian,
            *pydicom.uid.AllTransferSyntaxes,
        ]
    )
)
QUERY_RETRIEVE = (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
)


class NoDelayAssociationServer(ThreadedAssociationServer):
    reuse_port = False

    def server_bind(self) -> None:
        if self.reuse_port and self.socket is not None:
            # Several ``hie dicom`` processes accept on one port; the kernel spreads new
            # connections over them (by a hash of the peer's address and port).
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        client, address = super().get_request()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client, address

    def shutdown(self) -> None:
        # pynetdicom's shutdown also unregisters from ae._servers, which make_server
        # never registered us in.
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class SharedPortAssociationServer(NoDelayAssociationServer):
    reuse_port = True


class SupportedContexts(list[PresentationContext]):
    """The server's supported presentation contexts, cheap to copy.

    pynetdicom deep-copies them for every accepted association: with every storage SOP
    class times every transfer syntax that is ~6,700 UIDs, each re-validated by a regular
    expression, 0.13 s of CPU (holding the GIL) before the association can start. The UIDs
    are immutable and negotiation only reads the contexts, so a copy of each context and
    of its list of syntaxes is as safe and takes ~1 ms.
    """

    def __deepcopy__(self, memo: dict[int, object]) -> list[PresentationContext]:
        out = []
        for context in self:
            twin = copy.copy(context)
            twin._transfer_syntax = list(context._transfer_syntax)
            out.append(twin)
        return out


@dataclass(frozen=True)
class ScpDependencies:
    ingest: Ingest
    registry: AeRegistry
    engine: QueryEngine
    records: Records
    files: InstanceFiles


def quiet_pynetdicom() -> None:
    """Turn off pynetdicom's per-message logging work. Its standard handlers format log
    lines for every PDU and DIMSE message, and it renders every C-FIND identifier with
    ``pretty_dataset`` before calling ``LOGGER.debug``, all of it at INFO/DEBUG, which
    hie never shows: ~0.15 ms per C-FIND match, and more per C-STORE. Process-wide
    pynetdicom settings, read when an association is created."""
    _config.LOG_HANDLER_LEVEL = "none"
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False


def build_ae(ae_title: str, *, max_associations: int = 32, max_pdu: int = 0) -> AE:
    quiet_pynetdicom()
    ae = AE(ae_title=ae_title)
    ae.maximum_associations = max_associations
    ae.maximum_pdu_size = max_pdu  # 0: no limit on what peers may send us
    ae.network_timeout = 60
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    syntaxes = list(STORAGE_TRANSFER_SYNTAXES)
    for context in AllStoragePresentationContexts:
        # scp_role for C-GET: the peer receives our C-STOREs on its own association.
        ae.add_supported_context(
            str(context.abstract_syntax), syntaxes, scu_role=True, scp_role=True
        )
    ae.add_supported_context(Verification)
    for sop_class in QUERY_RETRIEVE:
        ae.add_supported_context(sop_class)
    return ae


def event_handlers(
    deps: ScpDependencies,
    *,
    ae_title: str,
    accept_unregistered: bool,
    poll_interval: float = 0.0002,
) -> list[EventHandlerType]:
    return [
        (
            evt.EVT_REQUESTED,
            handlers.handle_requested,
            [deps.registry, accept_unregistered, poll_interval],
        ),
        (evt.EVT_C_ECHO, handlers.handle_echo, []),
        (evt.EVT_C_STORE, handlers.handle_store, [deps.ingest, deps.registry]),
        (
            evt.EVT_C_FIND,
            handlers.handle_find,
            [deps.engine, deps.records, deps.registry, ae_title],
        ),
        (
            evt.EVT_C_GET,
            handlers.handle_get,
            [deps.engine, deps.records, deps.registry, deps.files],
        ),
        (
            evt.EVT_C_MOVE,
            handlers.handle_move,
            [deps.engine, deps.records, deps.registry, deps.files],
        ),
    ]


class DicomScp:
    """The listening application entity. ``port=0`` binds an ephemeral port."""

    def __init__(
        self,
        deps: ScpDependencies,
        *,
        ae_title: str,
        host: str,
        port: int,
        accept_unregistered: bool = False,
        max_associations: int = 32,
        poll_interval: float = 0.0002,
        share_port: bool = False,
    ) -> None:
        self.ae = build_ae(ae_title, max_associations=max_associations)
        self._server: ThreadedAssociationServer = self.ae.make_server(
            (host, port),
            ae_title=ae_title,
            evt_handlers=event_handlers(
                deps,
                ae_title=ae_title,
                accept_unregistered=accept_unregistered,
                poll_interval=poll_interval,
            ),
            server_class=SharedPortAssociationServer if share_port else NoDelayAssociationServer,
        )
        self._server.contexts = SupportedContexts(self._server.contexts)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def active_associations(self) -> list[object]:
        return list(self._server.active_associations)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dicom-scp", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        for assoc in self._server.active_associations:
            assoc.abort()
        if self._thread is not None:
            self._thread.join(timeout=10)
