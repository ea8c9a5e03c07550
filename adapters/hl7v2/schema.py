"""All of the adapter's tables on one MetaData (for Alembic and ``create_all``)."""

from __future__ import annotations

from adapters.hl7v2.db import metadata
from adapters.hl7v2.inbox import InboxRow
from adapters.hl7v2.senders import SenderRow

__all__ = ["InboxRow", "SenderRow", "metadata"]
