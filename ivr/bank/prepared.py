"""Statements compiled once and sent straight to the driver: the ledger's hot path.

A Core statement costs about 100 µs of Python per execution here, several times
what SQLite needs to run it. `Prepared` compiles a statement once for the
database's dialect (so the SQL still comes from the models) and executes it on
the connection's DBAPI cursor inside the same transaction, converting the few
value types the ledger binds. Driver errors come out as SQLAlchemy's exceptions,
so callers handle one family.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import ClauseElement


class Prepared:
    __slots__ = ("_dbapi_error", "_fixed", "_order", "_sqlite", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled: Any = statement.compile(dialect=dialect)
        self.sql = compiled.string
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} uses named parameters; Prepared needs positional ones")
        self._order: Sequence[str] = tuple(compiled.positiontup)
        # Values the statement fixes itself (`status == 'active'` becomes a parameter).
        self._fixed = dict(compiled.params)
        self._sqlite = dialect.name == "sqlite"
        self._dbapi_error = dialect.loaded_dbapi.Error

    def _value(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is int or value is None:
            return value  # most values, as they are
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        if self._sqlite:
            # SQLite has no date types; store them as SQLAlchemy's SQLite types do.
            if isinstance(value, dt.datetime):
                return f"{value:%Y-%m-%d %H:%M:%S.%f}"
            if isinstance(value, dt.date):
                return value.isoformat()
        return value

    def run(self, conn: Connection, values: dict[str, Any]) -> Any:
        """Execute with `values` by parameter name; returns the DBAPI cursor."""
        merged = {**self._fixed, **values}
        params = tuple(self._value(merged[name]) for name in self._order)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(self.sql, params)
        except self._dbapi_error as exc:
            raise DBAPIError.instance(self.sql, params, exc, self._dbapi_error) from exc
        return cursor

    def one_value(self, conn: Connection, values: dict[str, Any]) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.run(conn, values).fetchone()
        return None if row is None else row[0]

    def first(self, conn: Connection, values: dict[str, Any]) -> tuple[Any, ...] | None:
        row = self.run(conn, values).fetchone()
        return None if row is None else tuple(row)
