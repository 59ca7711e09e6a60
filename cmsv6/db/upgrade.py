"""Schema versions and ``cmsv6 db upgrade``: apply every step not yet applied, in order.

Each step is ``schema/NNNN_name.sql``, applied in its own transaction together with its row
in ``schema_version``; an advisory lock keeps two upgrades from running at once. Running
it again does nothing.
"""

from __future__ import annotations

import re
from importlib import resources

import psycopg2

#: Advisory lock key held while upgrading (an arbitrary constant: "cmsv6" in ASCII).
UPGRADE_LOCK = 0x636D737636


def steps() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every upgrade step, in order."""
    out = []
    for entry in resources.files("cmsv6.db.schema").iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out)


def current_version(cursor: psycopg2.extensions.cursor) -> int:
    cursor.execute("SELECT to_regclass('schema_version')")
    if cursor.fetchone()[0] is None:
        return 0
    cursor.execute("SELECT coalesce(max(version), 0) FROM schema_version")
    return int(cursor.fetchone()[0])


def upgrade(dsn: str) -> list[int]:
    """Bring the database at ``dsn`` to the latest version; the versions applied."""
    applied = []
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (UPGRADE_LOCK,))
            conn.commit()
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied timestamptz NOT NULL DEFAULT now())"
            )
            conn.commit()
            version = current_version(cur)
            for number, name, sql in steps():
                if number <= version:
                    continue
                cur.execute(sql)
                cur.execute(
                    "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (number, name)
                )
                conn.commit()
                applied.append(number)
            cur.execute("SELECT pg_advisory_unlock(%s)", (UPGRADE_LOCK,))
            conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return applied
