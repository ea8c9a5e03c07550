"""pynetdicom event handlers. Each gets its dependencies as arguments (bound with
``evt_handlers=[(event, handler, [deps...])]``) and documents the statuses it returns.

A handler that raises becomes a failure status in pynetdicom and the association stays
up; the handlers here catch what they can explain and say why in (0000,0902).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any, cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from adapters.dicom import dimse, reactor
from adapters.dicom.files import InstanceFiles
from adapters.dicom.index import Source
from adapters.dicom.ingest import Ingest
from adapters.dicom.ports import Records
from adapters.dicom.query import InvalidQuery, QueryEngine, Root, from_identifier, to_identifier
from adapters.dicom.registry import AeRegistry
from hie.context import RequestContext, Scopes

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ: rejected-permanent, by the service user, calling AE title not recognised.
REJECT_PERMANENT, REJECT_SOURCE_USER, REJECT_CALLING_AE = 0x01, 0x01, 0x03
PENDING = 0xFF00
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
MOVE_DESTINATION_UNKNOWN = 0xA801
SUB_OPERATIONS_FAILED = 0xA702  # out of resources: unable to perform sub-operations

_PATIENT_ROOT = "1.2.840.10008.5.1.4.1.2.1."


def root_of(sop_class_uid: str) -> Root:
    return Root.PATIENT if str(sop_class_uid).startswith(_PATIENT_ROOT) else Root.STUDY


def calling_ae(event: evt.Event) -> str:
    requestor = event.assoc.requestor
    primitive = requestor.primitive
    if primitive is not None and primitive.calling_ae_title:
        return str(primitive.calling_ae_title).strip()  # set before EVT_REQUESTED
    return str(requestor.ae_title).strip()


def context_for(ae_title: str, registry: AeRegistry) -> RequestContext:
    """Who a DICOM peer is, for the exchange and the consent filter."""
    registered = registry.get(ae_title)
    return RequestContext(
        actor=ae_title,
        organization=registered.organization if registered else None,
        scopes=Scopes("system/*.cruds"),
        source="dicom",
    )


def handle_requested(
    event: evt.Event, registry: AeRegistry, accept_unregistered: bool, poll_interval: float
) -> None:
    """EVT_REQUESTED: reject (permanent, service user, diagnostic 3 "calling AE title not
    recognised") a calling AE that is not registered, unless ``accept_unregistered``.

    An accepted association's DUL thread polls its socket every ``poll_interval`` seconds
    when idle. pynetdicom's 1 ms default is most of an instance's round trip on loopback
    (57 against 132 instances/s from one storescu); it has no public setting for it.
    """
    title = calling_ae(event)
    if accept_unregistered or registry.get(title) is not None:
        event.assoc.dul._run_loop_delay = poll_interval
        reactor.install(event.assoc)  # serve each message as soon as it is decoded
        dimse.install(event.assoc)  # responses without a pydicom command set
        return
    log.warning("rejected association from unregistered calling AE %r", title)
    event.assoc.acse.send_reject(REJECT_PERMANENT, REJECT_SOURCE_USER, REJECT_CALLING_AE)
    event.assoc.kill()  # waits until the DUL has sent the A-ASSOCIATE-RJ


def handle_echo(event: evt.Event) -> int:
    """EVT_C_ECHO: 0x0000 Success, always (reaching here means the association is up)."""
    return 0x0000


def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def handle_store(event: evt.Event, ingest: Ingest, registry: AeRegistry) -> int | Dataset:
    """EVT_C_STORE: the bytes as received go to :meth:`Ingest.store`.

    0x0000 success (also for a re-sent SOP Instance UID); 0xA700 out of resources (file
    or index write failed); 0xA900 data set does not match SOP Class; 0xC000 cannot
    understand (truncated or undecodable). See ``ingest.py``.
    """
    request = cast(C_STORE, event.request)
    title = calling_ae(event)
    registered = registry.get(title)
    result = ingest.store(
        sop_class_uid=str(request.AffectedSOPClassUID),
        sop_instance_uid=str(request.AffectedSOPInstanceUID),
        transfer_syntax_uid=str(event.context.transfer_syntax),
        dataset=event.encoded_dataset(include_meta=False),
        source=Source(title, registered.organization if registered else None),
    )
    if not result.comment:
        return result.status  # no Dataset to build and encode per instance
    return _status(result.status, result.comment)


def handle_find(
    event: evt.Event, engine: QueryEngine, records: Records, registry: AeRegistry, ae_title: str
) -> Iterator[tuple[int | Dataset, Dataset | None]]:
    """EVT_C_FIND (Patient Root and Study Root).

    0xFF00 pending, one per match; 0x0000 success at the end (sent by pynetdicom);
    0xFE00 cancelled on C-CANCEL; 0xA900 identifier does not match SOP Class (invalid
    level or key, malformed value: the Error Comment says which); 0xC000 unable to process.
    """
    ctx = context_for(calling_ae(event), registry)
    try:
        query = from_identifier(
            event.identifier, root_of(str(getattr(event.request, "AffectedSOPClassUID", "")))
        )
        matches = engine.find(query, lambda uids: records.visible_study_uids(ctx, uids))
    except InvalidQuery as exc:
        yield _status(IDENTIFIER_MISMATCH, exc.comment), None
        return
    except Exception as exc:  # the database or the consent filter is down
        log.exception("C-FIND failed")
        yield _status(UNABLE_TO_PROCESS, str(exc)), None
        return
    syntax = UID(str(event.context.transfer_syntax))
    for match in matches:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        yield (
            PENDING,
            to_identifier(
                match,
                query,
                retrieve_aet=ae_title,
                implicit_vr=syntax.is_implicit_VR,
                little_endian=syntax.is_little_endian,
            ),
        )


def _selected(
    event: evt.Event, engine: QueryEngine, records: Records, registry: AeRegistry
) -> list[Any]:
    ctx = context_for(calling_ae(event), registry)
    query = from_identifier(
        event.identifier, root_of(str(getattr(event.request, "AffectedSOPClassUID", "")))
    )
    return engine.instances(query, lambda uids: records.visible_study_uids(ctx, uids))


def _sub_operations(
    event: evt.Event, instances: list[Any], files: InstanceFiles
) -> Iterator[tuple[int, Dataset | None]]:
    for instance in instances:
        if event.is_cancelled:
            yield 0xFE00, None
            return
        # Read lazily: pydicom writes unaccessed elements back byte for byte.
        yield PENDING, dcmread(files.path(instance.path))


def handle_get(
    event: evt.Event,
    engine: QueryEngine,
    records: Records,
    registry: AeRegistry,
    files: InstanceFiles,
) -> Iterator[Any]:
    """EVT_C_GET: C-STORE sub-operations on the same association.

    0xFF00 pending per sub-operation; 0x0000 all sent, 0xB000 some failed (pynetdicom
    counts them); 0xFE00 cancelled; 0xA900 identifier does not match SOP Class;
    0xC000 unable to process.
    """
    try:
        instances = _selected(event, engine, records, registry)
    except InvalidQuery as exc:
        yield 0
        yield _status(IDENTIFIER_MISMATCH, exc.comment), None
        return
    except Exception as exc:
        log.exception("C-GET failed")
        yield 0
        yield _status(UNABLE_TO_PROCESS, str(exc)), None
        return
    yield len(instances)
    yield from _sub_operations(event, instances, files)


def _set_nodelay(event: evt.Event) -> None:
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _move_contexts(instances: list[Any]) -> list[PresentationContext]:
    pairs = dict.fromkeys((i.sop_class_uid, i.transfer_syntax_uid) for i in instances)
    contexts = []
    for sop_class, syntax in list(pairs)[:128]:
        syntaxes = [syntax]
        if not UID(syntax).is_compressed:
            syntaxes += [s for s in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) if s != syntax]
        contexts.append(build_context(sop_class, syntaxes))
    return contexts or [build_context(Verification)]


def handle_move(
    event: evt.Event,
    engine: QueryEngine,
    records: Records,
    registry: AeRegistry,
    files: InstanceFiles,
) -> Iterator[Any]:
    """EVT_C_MOVE: C-STORE sub-operations on a new association to a registered AE.

    0xA801 move destination unknown (not registered, or registered without host/port);
    0xFF00 pending per sub-operation; 0x0000 / 0xB000 / 0xA702 at the end (pynetdicom
    counts sub-operations); 0xFE00 cancelled; 0xA900 identifier does not match SOP Class;
    0xC000 unable to process.
    """
    destination = registry.get(str(event.move_destination).strip())
    if destination is None or not destination.is_move_destination:
        yield None, None
        return
    try:
        instances = _selected(event, engine, records, registry)
    except InvalidQuery as exc:
        yield destination.host, destination.port
        yield 0
        yield _status(IDENTIFIER_MISMATCH, exc.comment), None
        return
    except Exception as exc:
        log.exception("C-MOVE failed")
        yield destination.host, destination.port
        yield 0
        yield _status(UNABLE_TO_PROCESS, str(exc)), None
        return
    yield (
        destination.host,
        destination.port,
        {
            "ae_title": destination.ae_title,
            "contexts": _move_contexts(instances),
            "evt_handlers": [(evt.EVT_CONN_OPEN, _set_nodelay)],
        },
    )
    yield len(instances)
    yield from _sub_operations(event, instances, files)
