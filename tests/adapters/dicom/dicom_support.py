"""Test twins and helpers for the DICOM adapter tests (an in-memory Records)."""

from __future__ import annotations

import copy
import itertools
import subprocess
import threading
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from pynetdicom import AE, _config

from adapters.dicom.service import DicomService
from hie.context import RequestContext

ORG_A = "Organization/hosp-a"
ORG_B = "Organization/hosp-b"
ServiceFactory = Callable[..., DicomService]


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "dicom"


class FakeRecords:
    """An in-memory twin of the exchange, as much of it as the DICOM adapter uses."""

    def __init__(self) -> None:
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.transactions: list[tuple[RequestContext, dict[str, Any]]] = []
        self.hidden_studies: set[str] = set()
        self.visibility_calls: list[tuple[RequestContext, set[str]]] = []
        self.fail_transactions = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- Records ---------------------------------------------------------------------
    def transaction(self, ctx: RequestContext, bundle: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.fail_transactions:
                raise RuntimeError("exchange unavailable")
            assert bundle["resourceType"] == "Bundle"
            assert bundle["type"] == "transaction"
            self.transactions.append((ctx, copy.deepcopy(bundle)))
            staged = dict(self.resources)
            versions = dict(self.versions)
            refs: dict[str, str] = {}
            plan = []
            for entry in bundle["entry"]:
                request, resource = entry["request"], copy.deepcopy(entry["resource"])
                rtype = resource["resourceType"]
                if request["method"] == "POST":
                    found = self._match(staged, rtype, request.get("ifNoneExist", ""))
                    if len(found) > 1:
                        raise ValueError("multiple matches")
                    if found:
                        refs[entry["fullUrl"]] = f"{rtype}/{found[0]['id']}"
                        continue
                    rid = str(next(self._ids))
                elif request["method"] == "PUT":
                    url = request["url"]
                    assert url.startswith(rtype + "?")
                    found = self._match(staged, rtype, url.split("?", 1)[1])
                    if len(found) > 1:
                        raise ValueError("multiple matches")
                    rid = found[0]["id"] if found else str(next(self._ids))
                else:
                    raise NotImplementedError(request["method"])
                refs[entry["fullUrl"]] = f"{rtype}/{rid}"
                resource["id"] = rid
                plan.append(resource)
            for resource in plan:
                _rewrite(resource, refs)
                key = (resource["resourceType"], resource["id"])
                versions[key] = versions.get(key, 0) + 1
                resource["meta"] = {"versionId": str(versions[key])}
                staged[key] = resource
            self.resources, self.versions = staged, versions
            return {"resourceType": "Bundle", "type": "transaction-response"}

    def search_resources(
        self, ctx: RequestContext, resource_type: str, params: list[tuple[str, str]]
    ) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in params)
        return self._match(self.resources, resource_type, query)

    def visible_study_uids(self, ctx: RequestContext, study_uids: Collection[str]) -> set[str]:
        self.visibility_calls.append((ctx, set(study_uids)))
        return {uid for uid in study_uids if uid not in self.hidden_studies}

    # -- helpers ---------------------------------------------------------------------
    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        resource = copy.deepcopy(resource)
        resource.setdefault("id", str(uuid.uuid4()))
        self.resources[(resource["resourceType"], resource["id"])] = resource
        self.versions[(resource["resourceType"], resource["id"])] = 1
        return resource

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [r for (t, _), r in self.resources.items() if t == rtype]

    def imaging_study(self, study_uid: str) -> dict[str, Any] | None:
        found = self._match(
            self.resources, "ImagingStudy", f"identifier=urn:dicom:uid|urn:oid:{study_uid}"
        )
        return found[0] if found else None

    def version_of(self, resource: dict[str, Any]) -> int:
        return self.versions[(resource["resourceType"], resource["id"])]

    @staticmethod
    def _match(
        store: dict[tuple[str, str], dict[str, Any]], rtype: str, query: str
    ) -> list[dict[str, Any]]:
        params = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)]
        out = []
        for (t, _), resource in store.items():
            if t != rtype:
                continue
            if all(_param_matches(resource, k, v) for k, v in params):
                out.append(resource)
        return out


def _unescape(value: str) -> str:
    return (
        value.replace("\\|", "\x00").replace("\\,", ",").replace("\\$", "$").replace("\\\\", "\\")
    )


def _param_matches(resource: dict[str, Any], name: str, value: str) -> bool:
    value = unquote(value)
    if name == "_id":
        return resource.get("id") == value
    if name == "identifier":
        if "|" in value.replace("\\|", ""):
            head, _, tail = value.replace("\\|", "\x00").partition("|")
            system, val = head.replace("\x00", "|"), _unescape(tail.replace("\x00", "\\|"))
        else:
            system, val = None, _unescape(value)
        for ident in resource.get("identifier", []):
            if ident.get("value") != val:
                continue
            if (
                system is None
                or (system == "" and "system" not in ident)
                or ident.get("system") == system
            ):
                return True
        return False
    raise NotImplementedError(name)


def _rewrite(node: Any, refs: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in refs:
                node[key] = refs[value]
            else:
                _rewrite(value, refs)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, refs)


# -- DICOM helpers -------------------------------------------------------------------

VALID = sorted((FIXTURES / "valid").glob("*.dcm")) + sorted(
    p for p in (FIXTURES / "charset").glob("*.dcm") if p.name != "chrSQEncoding.dcm"
)

STORESCU_FLAG = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-x=",
    "1.2.840.10008.1.2.2": "-xb",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


def split_part10(data: bytes) -> tuple[Any, bytes]:
    """(file meta, data set bytes as stored) of a Part 10 file."""
    from io import BytesIO

    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = BytesIO(data)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    return meta, data[fp.tell() :]


def file_info(path: Path) -> tuple[str, str, str, str, bytes]:
    """(sop class, sop instance, transfer syntax, study uid, data set bytes) of a fixture."""
    import pydicom

    meta, body = split_part10(path.read_bytes())
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (
        str(meta.MediaStorageSOPClassUID),
        str(meta.MediaStorageSOPInstanceUID),
        str(meta.TransferSyntaxUID),
        str(ds.StudyInstanceUID),
        body,
    )


def inflated(ts: str, body: bytes) -> bytes:
    import zlib

    return zlib.decompress(body, -zlib.MAX_WBITS) if ts == "1.2.840.10008.1.2.1.99" else body


CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"


def send_all(service: DicomService, monkeypatch: pytest.MonkeyPatch, files: list[Path]) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    ae = AE(ae_title="PYCLIENT")
    contexts = {(m[0], m[2]) for m in (file_info(p) for p in files)}
    for sop_class, ts in contexts:
        ae.add_requested_context(sop_class, [ts])
    assoc = ae.associate(*service.address, ae_title="HIE")
    assert assoc.is_established
    try:
        for path in files:
            assert assoc.send_c_store(path).Status == 0x0000, path.name
    finally:
        assoc.release()
