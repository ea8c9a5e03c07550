"""Building the card service from the settings (called by ``hie.app`` and ``hie card``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine

from card.pseudonyms import Pseudonyms, load_or_create_key
from card.qr import QrTokens
from card.registry import CardRegistry
from card.service import CardService
from hie.auth.keys import load_or_create_signing_key
from hie.crypto import BlindIndex, FieldCipher, load_keyring
from hie.exchange import Exchange
from hie.settings import Settings


def build_card_service(
    settings: Settings, engine: Engine, exchange: Exchange, clock: Callable[[], datetime]
) -> CardService:
    keys = load_keyring(settings.data_dir)
    return CardService(
        registry=CardRegistry(engine),
        exchange=exchange,
        cipher=FieldCipher(keys.encryption),
        blind=BlindIndex(keys.index),
        qr=QrTokens(
            load_or_create_signing_key(settings.data_dir),
            issuer=settings.auth.issuer,
            ttl=settings.card.qr_ttl,
            clock=clock,
        ),
        pseudonyms=Pseudonyms(load_or_create_key(settings.data_dir)),
        clock=clock,
        grant_period=timedelta(hours=settings.card.checkin_grant_hours),
        custodian=settings.card.organization,
    )
