"""Reading what the servers stored, as a test does: one blocking query, its rows."""

from __future__ import annotations

from typing import Any

import psycopg2


def query(dsn: str, sql: str, args: Any = ()) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (none for a statement that returns none), in a connection of its
    own that is closed afterwards."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        out = cur.fetchall() if cur.description else []
    conn.close()
    return out
