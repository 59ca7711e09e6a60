"""Schema versions and ``cmsv6 db upgrade``: apply every step not yet applied, in order.

Each step is ``schema/NNNN_name.sql``, applied in its own transaction together with its row
in ``schema_version``; an advisory lock keeps two upgrades from running at once. Running
it again does nothing.

The upgrade runs as the schema's owner; ``grant_app_role`` then gives the servers' own role
(``cmsv6 db upgrade --app-role NAME``) the rights they need on what the owner made.
"""

from __future__ import annotations

import re
from importlib import resources

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import encrypt_password

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


def upgrade(dsn: str, until: int | None = None) -> list[int]:
    """Bring the database at ``dsn`` to the latest version (or to ``until``: the tests of an
    upgrade over existing rows); the versions applied."""
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
                if number <= version or (until is not None and number > until):
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


# -- the servers' role -----------------------------------------------------------------------

#: Per table the servers read and write rows; schema_version they only read.
_TABLE_RIGHTS = "SELECT, INSERT, UPDATE, DELETE"


class RoleError(Exception):
    """The servers' role cannot be made least-privilege (it is too powerful, or it is the
    role running the upgrade)."""


def grant_app_role(dsn: str, role: str, password: str | None = None) -> bool:
    """Give ``role``, the role the servers connect as, what they need and no more; create it
    first (LOGIN, no other attribute) if it does not exist, which needs CREATEROLE. True if
    it was created.

    Run as the schema's owner, after ``upgrade``: rows of every table (schema_version read
    only), USAGE on the sequences, EXECUTE on ``cmsv6_position_partition`` and
    ``cmsv6_position_maintain`` (the login server keeps the partitions); default
    privileges give it the same on what later upgrade steps by this owner create. The role
    may own nothing, and may not be a superuser or create roles or databases.
    ``password``, if given, is set (sent already SCRAM-hashed, never in clear)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, current_database()")
            owner, database = cur.fetchone()
            if role == owner:
                raise RoleError(f"{role} runs the upgrade (owns the schema); the servers need"
                                " a role of their own")
            cur.execute(
                "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication"
                " OR rolbypassrls FROM pg_roles WHERE rolname = %s", (role,))  # fmt: skip
            row = cur.fetchone()
            created = row is None
            if created:
                cur.execute(sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                    " NOBYPASSRLS").format(sql.Identifier(role)))  # fmt: skip
            elif row[0]:
                raise RoleError(f"{role} is a superuser or may create roles or databases,"
                                " replicate or bypass row security: not for the servers")
            if password is not None:
                hashed = encrypt_password(password, role, conn, "scram-sha-256")
                cur.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(hashed)))
            owned = _owned(cur, role)
            if owned:
                raise RoleError(f"{role} owns {', '.join(owned[:5])}: the servers' role must own"
                                " nothing (ALTER ... OWNER TO the schema's owner)")
            name = sql.Identifier(role)
            for statement in (
                "GRANT CONNECT ON DATABASE {db} TO {r}",
                "GRANT USAGE ON SCHEMA public TO {r}",
                f"GRANT {_TABLE_RIGHTS} ON ALL TABLES IN SCHEMA public TO {{r}}",
                "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON schema_version FROM {r}",
                "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {r}",
                "GRANT EXECUTE ON FUNCTION cmsv6_position_partition(integer, integer) TO {r}",
                "GRANT EXECUTE ON FUNCTION cmsv6_position_maintain(timestamptz, integer, integer) TO {r}",
                f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {_TABLE_RIGHTS} ON TABLES TO {{r}}",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO {r}",
            ):  # fmt: skip
                cur.execute(sql.SQL(statement).format(db=sql.Identifier(database), r=name))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return created


def _owned(cur: psycopg2.extensions.cursor, role: str) -> list[str]:
    """Relations, functions and schemas of this database that ``role`` owns."""
    cur.execute(
        "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner"
        " WHERE r.rolname = %(r)s"
        " UNION ALL SELECT p.oid::regprocedure::text FROM pg_proc p"
        " JOIN pg_roles r ON r.oid = p.proowner WHERE r.rolname = %(r)s"
        " UNION ALL SELECT 'schema ' || n.nspname FROM pg_namespace n"
        " JOIN pg_roles r ON r.oid = n.nspowner WHERE r.rolname = %(r)s"
        " UNION ALL SELECT 'database ' || d.datname FROM pg_database d"
        " JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = %(r)s",
        {"r": role},
    )
    return [r[0] for r in cur.fetchall()]
