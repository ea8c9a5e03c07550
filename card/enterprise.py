"""The one place the card service asks which enterprise Patient a card holder is."""

from __future__ import annotations

from hie.context import RequestContext
from hie.errors import NotFound
from hie.exchange import Exchange


def enterprise_patient(exchange: Exchange, ctx: RequestContext, source: str) -> str:
    """The enterprise (golden) Patient of the card-source Patient ``source``, from the
    master patient index. Where the index is switched off (``identity.enabled = false``)
    the card-source Patient stands for the person."""
    try:
        return exchange.enterprise_of(ctx, source)
    except NotFound:
        if exchange.identity is None:
            return source
        raise
