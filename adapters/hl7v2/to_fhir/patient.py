"""PID -> the sender's source Patient; NK1 -> RelatedPerson; A40 merge.

The source Patient is keyed by (facility, MRN): the MRN is the PID-3 identifier typed MR
(or PI/MRN; else the first that is not a resident ID), under the sender's MRN system. Its
conditional update ``PUT Patient?identifier=<mrn system>|<mrn>`` creates it on first
contact and replaces it from every later PID. Resident ID numbers (type NNCHN, or the
sender's configured assigning authority) are stored under urn:oid:2.16.156.10011.1.3;
linking source Patients to the enterprise Patient is the identity service's job.
"""

from __future__ import annotations

from adapters.hl7v2.message import Composite, Message, Segment
from adapters.hl7v2.senders import Sender
from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError, Resource
from adapters.hl7v2.to_fhir.datatypes import (
    address,
    concept,
    contact_point,
    human_name,
    identifier,
    is_resident_id,
)

_MRN_TYPES = ("MR", "PI", "MRN", "PT")


def _cx_is_resident(cx: Composite, sender: Sender) -> bool:
    if cx[5].upper() == "NNCHN":
        return True
    authority = sender.resident_id_authority
    return bool(authority) and authority in (cx.sub(4, 1), cx.sub(4, 2))


def mrn_of(pid: Segment, sender: Sender) -> str | None:
    """The sender's local MRN from PID-3 (falling back to PID-2 for old senders)."""
    reps = [cx for cx in pid.reps(3) if cx[1].strip()]
    for cx in reps:
        if cx[5].upper() in _MRN_TYPES and not _cx_is_resident(cx, sender):
            return cx[1].strip()
    for cx in reps:
        if not _cx_is_resident(cx, sender) and cx[5].upper() not in ("SS", "NI", "DL", "PPN"):
            return cx[1].strip()
    old = pid[2][1].strip()
    return old or None


def patient_key(message: Message, sender: Sender) -> str | None:
    """What orders a patient's messages in the inbox: sender and MRN."""
    pid = message.first("PID")
    if pid is None:
        return None
    mrn = mrn_of(pid, sender)
    return f"{sender.id}:{mrn}" if mrn else None


def mrn_system(ctx: Context) -> str:
    return ctx.sender.mrn_system


def patient_resource(ctx: Context, pid: Segment) -> tuple[Resource, str]:
    """The Patient for a PID and its MRN; raises MappingError without one."""
    mrn = mrn_of(pid, ctx.sender)
    if not mrn:
        raise MappingError("PID-3", "no patient identifier (MRN) to key the patient by")
    idents = [
        {
            "system": mrn_system(ctx),
            "value": mrn,
            "type": {"coding": [{"system": codes.V2 + "0203", "code": "MR"}]},
        }
    ]
    seen = {(idents[0]["system"], mrn)}
    for n in (3, 2, 4):
        for cx in pid.reps(n):
            ident = identifier(ctx, cx)
            if ident is None:
                continue
            key = (ident.get("system", ""), ident["value"])
            if ident["value"] == mrn and not is_resident_id(ctx, cx) and n != 4:
                continue  # the MRN itself, already under the sender's MRN system
            if key not in seen:
                seen.add(key)
                idents.append(ident)
    patient: Resource = {"resourceType": "Patient", "identifier": idents, "active": True}
    names = [n for n in (human_name(x) for x in pid.reps(5)) if n]
    names += [{**n, "use": n.get("use", "old")} for n in (human_name(x) for x in pid.reps(9)) if n]
    if names:
        patient["name"] = names
    telecom = [t for t in (contact_point(x, "home") for x in pid.reps(13)) if t]
    telecom += [t for t in (contact_point(x, "work") for x in pid.reps(14)) if t]
    if telecom:
        patient["telecom"] = telecom
    gender = pid[8][1].strip().upper()
    if gender:
        patient["gender"] = codes.GENDER.get(gender, "unknown")
    birth = ctx.date(pid, 7)
    if birth:
        patient["birthDate"] = birth
        raw = pid[7][1].strip()
        if len(raw) > 8:
            full = ctx.datetime(pid, 7)
            if full:
                patient["_birthDate"] = {
                    "extension": [{"url": codes.PATIENT_BIRTH_TIME, "valueDateTime": full}]
                }
    death = ctx.datetime(pid, 29)
    if death:
        patient["deceasedDateTime"] = death
    elif pid[30][1].upper() in ("Y", "N"):
        patient["deceasedBoolean"] = pid[30][1].upper() == "Y"
    addresses = [a for a in (address(x) for x in pid.reps(11)) if a]
    if addresses:
        patient["address"] = addresses
    marital = _marital(pid[16])
    if marital:
        patient["maritalStatus"] = marital
    if pid[24][1].upper() == "Y":
        order = pid[25][1].strip()
        patient["multipleBirthInteger" if order.isdigit() else "multipleBirthBoolean"] = (
            int(order) if order.isdigit() else True
        )
    elif pid[24][1].upper() == "N":
        patient["multipleBirthBoolean"] = False
    language = concept(ctx, pid[15])
    if language:
        patient["communication"] = [{"language": language}]
    org = ctx.organization()
    if org:
        patient["managingOrganization"] = org
    return patient, mrn


def _marital(cwe: Composite) -> Resource | None:
    code = cwe[1].strip()
    if not code:
        return None
    mapped = codes.MARITAL.get(code.upper())
    if mapped is None:
        return {"text": cwe[2] or code}
    coding = {"system": codes.V3_MARITAL, "code": mapped}
    if mapped in ("UNK", "OTH"):
        coding["system"] = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
    out: Resource = {"coding": [coding]}
    if cwe[2]:
        out["text"] = cwe[2]
    return out


def add_patient(ctx: Context, pid: Segment) -> tuple[str, str]:
    """Add the conditional update of PID's Patient; returns (fullUrl, MRN)."""
    patient, mrn = patient_resource(ctx, pid)
    return ctx.put(patient, mrn_system(ctx), mrn), mrn


def add_related_persons(ctx: Context, message: Message, patient_url: str, mrn: str) -> None:
    """NK1 -> RelatedPerson, keyed by NK1-33 or by (MRN, name, relationship)."""
    for nk1 in message.all("NK1"):
        name = human_name(nk1[2])
        relationship = concept(ctx, nk1[3])
        if name is None and relationship is None:
            continue
        person: Resource = {
            "resourceType": "RelatedPerson",
            "active": True,
            "patient": ctx.reference(patient_url),
        }
        if name:
            person["name"] = [name]
        rels = [r for r in (relationship, concept(ctx, nk1[7])) if r]
        if rels:
            person["relationship"] = rels
        telecom = [t for t in (contact_point(x, "home") for x in nk1.reps(5)) if t]
        telecom += [t for t in (contact_point(x, "work") for x in nk1.reps(6)) if t]
        if telecom:
            person["telecom"] = telecom
        addresses = [a for a in (address(x) for x in nk1.reps(4)) if a]
        if addresses:
            person["address"] = addresses
        gender = nk1[15][1].strip().upper()
        if gender:
            person["gender"] = codes.GENDER.get(gender, "unknown")
        own = next((identifier(ctx, cx) for cx in nk1.reps(33) if cx[1].strip()), None)
        if own is not None and own.get("system"):
            person["identifier"] = [own]
            ctx.put(person, own["system"], own["value"])
            continue
        label = (name or {}).get("text", "") or nk1[2].text
        rel = (relationship or {}).get("text", "") or nk1[3][1]
        ctx.put(person, ctx.system("related-person"), f"{mrn}/{label}/{rel}")


def add_merge(ctx: Context, message: Message) -> list[str]:
    """ADT A40: each PID/MRG pair merges the MRG patient into the PID patient.

    The surviving source Patient is written from PID with a ``replaces`` link; the merged
    one is written inactive with a ``replaced-by`` link to the survivor. Its records keep
    pointing at it: readers follow the link (and the identity service re-links the
    enterprise Patient). The merged Patient's earlier demographics stay in its history.
    """
    urls: list[str] = []
    segments = message.segments
    for i, seg in enumerate(segments):
        if seg.name != "PID":
            continue
        mrg = next((s for s in segments[i + 1 :] if s.name in ("MRG", "PID")), None)
        if mrg is None or mrg.name != "MRG":
            raise MappingError("MRG", f"PID at segment {seg.position} has no MRG to merge")
        survivor, survivor_mrn = patient_resource(ctx, seg)
        merged_mrn = _mrg_mrn(mrg, ctx.sender)
        if not merged_mrn:
            raise MappingError("MRG-1", "no prior patient identifier to merge")
        if merged_mrn == survivor_mrn:
            raise MappingError("MRG-1", f"prior identifier {merged_mrn} is the surviving patient's")
        merged_url = ctx.url_for("Patient", mrn_system(ctx), merged_mrn)
        survivor["link"] = [{"other": ctx.reference(merged_url), "type": "replaces"}]
        survivor_url = ctx.put(survivor, mrn_system(ctx), survivor_mrn)
        merged: Resource = {
            "resourceType": "Patient",
            "active": False,
            "identifier": [
                {
                    "system": mrn_system(ctx),
                    "value": merged_mrn,
                    "type": {"coding": [{"system": codes.V2 + "0203", "code": "MR"}]},
                }
            ],
            "link": [{"other": ctx.reference(survivor_url), "type": "replaced-by"}],
        }
        prior_name = human_name(mrg[7])
        if prior_name:
            merged["name"] = [prior_name]
        org = ctx.organization()
        if org:
            merged["managingOrganization"] = org
        ctx.put(merged, mrn_system(ctx), merged_mrn)
        urls.append(survivor_url)
    if not urls:
        raise MappingError("PID", "A40 without a PID segment")
    return urls


def _mrg_mrn(mrg: Segment, sender: Sender) -> str | None:
    reps = [cx for cx in mrg.reps(1) if cx[1].strip()]
    for cx in reps:
        if cx[5].upper() in _MRN_TYPES and not _cx_is_resident(cx, sender):
            return cx[1].strip()
    for cx in reps:
        if not _cx_is_resident(cx, sender):
            return cx[1].strip()
    old = mrg[4][1].strip()
    return old or None
