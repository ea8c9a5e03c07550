"""Every table the SQL database holds, for Alembic: the FHIR store and the adapters' own."""

from __future__ import annotations

from hie.storage.sql import index_tables as _index_tables  # noqa: F401 (registers the tables)
from hie.storage.sql.models import Base

metadata = Base.metadata
