"""The one place the card service asks which enterprise Patient a card holder is."""

from __future__ import annotations

from hie.context import RequestContext
from hie.exchange import Exchange


def enterprise_patient(exchange: Exchange, ctx: RequestContext, source: str) -> str:
    """The enterprise (golden) Patient of the card-source Patient ``source``.

    ``ctx`` is the card service's own context (it may read Patients). Until the master
    patient index provides ``Exchange.enterprise_of`` on main, the card-source Patient
    stands for the person; then this becomes ``exchange.enterprise_of(ctx, source)``.
    """
    return source
