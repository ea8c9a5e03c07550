"""Identifier systems that several ways in must agree on.

A hospital's medical record number only means something together with the hospital, so
each organisation's MRNs get their own system. The HL7 v2 feed and the PACS of one
hospital both key its source Patients with :func:`mrn_system`, so they land on the same
source Patient.
"""

from __future__ import annotations

import re

# PRC resident identity card number (GB 11643-1999), national OID.
RESIDENT_ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"

_ORG_REF = re.compile(r"^Organization/([A-Za-z0-9\-.]{1,64})$")


def organization_id(organization_ref: str) -> str:
    """``Organization/abc`` -> ``abc``; anything else is a ValueError."""
    match = _ORG_REF.match(organization_ref)
    if not match:
        raise ValueError(f"not an Organization reference: {organization_ref!r}")
    return match.group(1)


def mrn_system(organization_ref: str) -> str:
    """The identifier system of one organisation's medical record numbers.

    >>> mrn_system("Organization/fy-hospital-1")
    'urn:hie:mrn:fy-hospital-1'
    """
    return f"urn:hie:mrn:{organization_id(organization_ref)}"


# Mianzhou Pass resident health card numbers (16 digits, see card/card_number.py).
CARD_SYSTEM = "urn:hie:mianzhou-pass"

# Enterprise (golden) Patient ids of the master patient index.
ENTERPRISE_SYSTEM = "urn:hie:enterprise-id"

# meta.tag system of the index's own markers: ``enterprise`` on golden Patients, ``card``
# on the card service's source Patients (their data wins in survivorship).
IDENTITY_TAG_SYSTEM = "urn:hie:identity"
