"""A DB-API connection that records what it is asked and answers with given rows."""

from __future__ import annotations

from typing import Any


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection

    def execute(self, sql: str, params: Any = None) -> None:
        self.connection.calls.append((sql, params))
        if self.connection.fail:
            raise RuntimeError(self.connection.fail)

    def fetchone(self) -> Any:
        return self.connection.rows.pop(0) if self.connection.rows else None

    def close(self) -> None:
        self.connection.closed_cursors += 1


class FakeConnection:
    """Records what it is asked; answers with the rows it is given."""

    def __init__(self, *rows: Any, fail: str = "") -> None:
        self.rows = list(rows)
        self.calls: list[tuple[str, Any]] = []
        self.fail = fail
        self.closed_cursors = 0

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        raise AssertionError("the caller's transaction is the caller's to commit")
