"""HL7 v2 data types to FHIR data types (CX, EI, XPN, XAD, XTN, CWE, XCN, NM, SN)."""

from __future__ import annotations

import re
from typing import Any

from adapters.hl7v2 import timestamps
from adapters.hl7v2.message import Composite, Segment
from adapters.hl7v2.to_fhir import codes
from adapters.hl7v2.to_fhir.context import Context, MappingError
from terminology.conceptmaps import COMMON_CN_LAB

JSON = dict[str, Any]
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def number(text: str, location: str) -> int | float:
    """A decimal as JSON number; ints stay ints. Raises MappingError naming the field."""
    value = text.strip()
    if not _NUMBER.match(value):
        raise MappingError(location, f"{text!r} is not a number")
    if "." in value:
        return float(value)
    return int(value)


def is_number(text: str) -> bool:
    return bool(_NUMBER.match(text.strip()))


# -- identifiers ---------------------------------------------------------------------------


def hd_system(ctx: Context, namespace: str, universal: str, kind: str) -> str | None:
    """A system URI from an assigning authority (HD): OID, URI, else facility-scoped name."""
    kind = kind.upper()
    if universal:
        if kind == "ISO" or re.fullmatch(r"[0-2](\.\d+)+", universal):
            return f"urn:oid:{universal}"
        if kind in ("URI", "URL") or universal.startswith(("http://", "https://", "urn:")):
            return universal
    if namespace:
        return codes.local_system(ctx.facility, namespace).replace(":cs:", ":id:")
    return None


def is_resident_id(ctx: Context, cx: Composite) -> bool:
    kind = cx[5].upper()
    if kind == "NNCHN":
        return True
    authority = ctx.sender.resident_id_authority
    return bool(authority) and authority in (cx.sub(4, 1), cx.sub(4, 2))


def identifier(ctx: Context, cx: Composite) -> JSON | None:
    """CX -> Identifier (resident ID numbers go under the national system)."""
    value = cx[1].strip()
    if not value:
        return None
    out: JSON = {"value": value}
    kind = cx[5].strip()
    if is_resident_id(ctx, cx):
        out["system"] = codes.RESIDENT_ID
        kind = "NNCHN"
    else:
        system = hd_system(ctx, cx.sub(4, 1), cx.sub(4, 2), cx.sub(4, 3))
        if system:
            out["system"] = system
    if kind:
        out["type"] = {"coding": [{"system": codes.V2 + "0203", "code": kind}]}
    period = _period(cx[7], cx[8])
    if period:
        out["period"] = period
    return out


def ei_identifier(ctx: Context, ei: Composite, kind: str) -> JSON | None:
    """EI (entity id^namespace^universal id^type) -> Identifier.

    Without an assigning authority the system is the facility's ``kind`` system.
    """
    value = ei[1].strip()
    if not value:
        return None
    system = hd_system(ctx, ei[2], ei[3], ei[4]) or ctx.system(kind)
    return {"system": system, "value": value}


def _period(start: str, end: str) -> JSON | None:
    out: JSON = {}
    for key, value in (("start", start), ("end", end)):
        if value and timestamps.check(value) is None:
            out[key] = timestamps.to_date(value)
    return out or None


# -- names, addresses, telecom ---------------------------------------------------------------


def human_name(xpn: Composite) -> JSON | None:
    """XPN -> HumanName; a Chinese name (张^三) gets ``text`` 张三, family first."""
    family = xpn[1].strip()
    given = [g for g in (xpn[2].strip(), xpn[3].strip()) if g]
    if not family and not given:
        return None
    out: JSON = {}
    if family:
        out["family"] = family
    if given:
        out["given"] = given
    if xpn[4]:
        out["suffix"] = [xpn[4]]
    if xpn[6]:
        out.setdefault("suffix", []).append(xpn[6])
    if xpn[5]:
        out["prefix"] = [xpn[5]]
    use = codes.NAME_USE.get(xpn[7].upper())
    if use:
        out["use"] = use
    if has_cjk(family + "".join(given)):
        out["text"] = family + "".join(given)
    else:
        out["text"] = " ".join([*given, family]).strip()
    return out


def address(xad: Composite) -> JSON | None:
    street = " ".join(s for s in (p.strip() for p in xad.subs(1)) if s)
    line = [x for x in (street, xad[2].strip()) if x]
    out: JSON = {}
    if line:
        out["line"] = line
    for key, i in (("city", 3), ("state", 4), ("postalCode", 5), ("country", 6), ("district", 9)):
        value = xad[i].strip()
        if value:
            out[key] = value
    if not out:
        return None
    kind = xad[7].upper()
    if kind in codes.ADDRESS_USE:
        out["use"] = codes.ADDRESS_USE[kind]
    if kind in codes.ADDRESS_TYPE:
        out["type"] = codes.ADDRESS_TYPE[kind]
    joined = "".join([out.get("state", ""), out.get("city", ""), out.get("district", ""), *line])
    if has_cjk(joined):
        out["text"] = joined
    return out


def contact_point(xtn: Composite, default_use: str | None = None) -> JSON | None:
    equipment = xtn[3].strip().upper()
    use_code = xtn[2].strip().upper()
    email = xtn[4].strip()
    if equipment in ("INTERNET", "X.400") or use_code == "NET" or (email and not xtn[7]):
        if not email:
            return None
        return {"system": "email", "value": email, "use": codes.TELECOM_USE.get(use_code, "home")}
    value = xtn[12].strip() or xtn[1].strip()
    if not value and xtn[7]:
        parts = []
        if xtn[5]:
            parts.append(f"+{xtn[5]}")
        if xtn[6]:
            parts.append(f"({xtn[6]})")
        parts.append(xtn[7])
        value = " ".join(parts)
        if xtn[8]:
            value += f" ext. {xtn[8]}"
    if not value:
        return None
    out: JSON = {"system": codes.TELECOM_SYSTEM.get(equipment, "phone"), "value": value}
    use = "mobile" if equipment == "CP" else codes.TELECOM_USE.get(use_code, default_use)
    if use:
        out["use"] = use
    return out


# -- codes ----------------------------------------------------------------------------------


def codings(ctx: Context, cwe: Composite) -> list[JSON]:
    out: list[JSON] = []
    for c, d, s in ((1, 2, 3), (4, 5, 6)):
        code = cwe[c].strip()
        if not code:
            continue
        coding: JSON = {"system": codes.system_for(cwe[s] or "L", ctx.facility), "code": code}
        if cwe[d]:
            coding["display"] = cwe[d]
        out.append(coding)
    return out


def concept(ctx: Context, cwe: Composite, *, translate: bool = False) -> JSON | None:
    """CWE/CE/CNE -> CodeableConcept; ``translate`` adds standard codes from ConceptMaps."""
    found = codings(ctx, cwe)
    text = (cwe[9] or cwe[2] or cwe[5]).strip()
    if not found and not text:
        # An ID/IS value (a bare code) sent where CWE is expected.
        return None
    if translate and ctx.maps is not None:
        found = _with_translations(ctx, found, text)
    out: JSON = {}
    if found:
        out["coding"] = found
    if text:
        out["text"] = text
    return out


def _with_translations(ctx: Context, found: list[JSON], text: str) -> list[JSON]:
    assert ctx.maps is not None
    if any(c["system"] == codes.LOINC for c in found):
        return found
    extra: list[JSON] = []
    for c in found:
        hits = ctx.maps.translate(c["system"], c["code"])
        if not hits and c["system"].startswith(codes.BASE):
            # A local code: try the shared table of common Chinese lab abbreviations.
            hits = ctx.maps.translate(COMMON_CN_LAB, c["code"].upper())
            if not hits and c.get("display"):
                hits = ctx.maps.translate_display(COMMON_CN_LAB, c["display"])
        extra.extend(h.coding() for h in hits)
    if not extra and text and (not found or found[0]["system"].startswith(codes.BASE)):
        extra.extend(h.coding() for h in ctx.maps.translate_display(COMMON_CN_LAB, text))
    seen = {(c["system"], c["code"]) for c in found}
    for coding in extra:
        if (coding["system"], coding["code"]) not in seen:
            seen.add((coding["system"], coding["code"]))
            found.append(coding)
    return found


def table_concept(table: str, code: str, display: str = "") -> JSON | None:
    if not code:
        return None
    coding: JSON = {"system": codes.V2 + table, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def practitioner(xcn: Composite) -> JSON | None:
    """XCN -> a logical Reference (identifier and display; no Practitioner is created)."""
    ident = xcn[1].strip()
    name = human_name(xcn.tail(2))
    if not ident and not name:
        return None
    out: JSON = {"type": "Practitioner"}
    if ident:
        ref: JSON = {"value": ident}
        authority = xcn.sub(9, 2) or xcn.sub(9, 1)
        if authority:
            ref["system"] = (
                f"urn:oid:{authority}"
                if re.fullmatch(r"\d+(\.\d+)+", authority)
                else codes.local_system("practitioner", authority).replace(":cs:", ":id:")
            )
        out["identifier"] = ref
    if name:
        out["display"] = name["text"] or ident
    elif ident:
        out["display"] = ident
    return out


# -- quantities ----------------------------------------------------------------------------


def unit_coding(unit: Composite) -> JSON:
    """OBX-6 -> Quantity unit fields: UCUM where the unit is UCUM (or a known alias)."""
    code = unit[1].strip()
    system = unit[3].strip().upper()
    label = unit[2].strip() or code
    out: JSON = {}
    if label:
        out["unit"] = label if unit[2].strip() else code
    ucum = codes.UNIT_ALIASES.get(code, code)
    if code and ((system in ("UCUM", "ISO+") and ucum == code) or ucum in codes.UCUM_UNITS):
        out["system"] = codes.UCUM
        out["code"] = ucum
    return out


def quantity(value: str, unit: Composite, location: str, comparator: str = "") -> JSON:
    out: JSON = {"value": number(value, location)}
    if comparator:
        out["comparator"] = comparator
    out.update(unit_coding(unit))
    return out


def location_display(pl: Composite) -> str | None:
    """PL (point of care^room^bed^facility...) -> a display string."""
    parts = [pl[1], pl[2], pl[3], pl.sub(4, 1)]
    text = ", ".join(p for p in (x.strip() for x in parts) if p)
    return text or None


def seg_concept(ctx: Context, seg: Segment, n: int, *, translate: bool = False) -> JSON | None:
    return concept(ctx, seg[n], translate=translate)
