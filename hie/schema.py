"""Every table in the database, for Alembic: the FHIR store and the adapters' own tables.

It lives at the top of the package (like ``hie.app``) because it gathers the metadata of
layers that must not import each other.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from adapters.dicom.models import metadata as dicom_metadata
from adapters.hl7v2.schema import metadata as hl7_metadata
from card.models import metadata as card_metadata
from hie.auth.models import metadata as auth_metadata
from hie.storage.sql import grants as _grants  # noqa: F401 (registers the table)
from hie.storage.sql import identity as _identity  # noqa: F401 (registers the tables)
from hie.storage.sql import index_tables as _index_tables  # noqa: F401 (registers the tables)
from hie.storage.sql.audit import metadata as audit_metadata
from hie.storage.sql.models import Base

metadata: list[MetaData] = [
    Base.metadata,
    dicom_metadata,
    hl7_metadata,
    card_metadata,
    audit_metadata,
    auth_metadata,
]


def all_tables() -> list[str]:
    """Every table name, children first (for truncation in tests)."""
    names: list[str] = []
    for meta in metadata:
        names.extend(t.name for t in reversed(meta.sorted_tables))
    return names
