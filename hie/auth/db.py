"""Sessions on the shared engine for the authentication tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hie.storage.sql.engine import WRITE_OPTION


class AuthDatabase:
    """Short transactions: a read, or a write that begins IMMEDIATE on SQLite."""

    def __init__(self, engine: Engine) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        writer = engine.execution_options(**{WRITE_OPTION: True})
        self._write = sessionmaker(writer, expire_on_commit=False)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        with self._write() as session, session.begin():
            yield session
