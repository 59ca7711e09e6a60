"""Fleets, and what a user may see: the fleet visibility every user-facing query applies.

Visibility is decided here, in SQL: an admin sees every device; an operator sees the
devices of the fleets in ``user_fleets``. A device a user may not see is reported exactly
as one that does not exist, so the API never leaks its existence.

Also ``cmsv6 fleet add`` and ``fleet list``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg2
from attrs import frozen

from cmsv6.db.service import AdminError

if TYPE_CHECKING:
    from cmsv6.db.users import User

# The visibility test on ``devices d`` for the user in %(uid)s / %(admin)s.
VISIBLE = "(%(admin)s OR d.fleet_id IN (SELECT fleet_id FROM user_fleets WHERE user_id = %(uid)s))"

#: The length a fleet's name may have (the schema's check).
NAME_LENGTH = (1, 100)


def who(user: User, **more: Any) -> dict[str, Any]:
    """The query arguments of ``VISIBLE`` for ``user`` (and ``more``)."""
    return {"uid": user.id, "admin": user.admin, **more}


def no_such_fleet(name: str) -> AdminError:
    return AdminError(f"fleet {name!r} does not exist (cmsv6 fleet add {name}, or cmsv6 fleet list)")


def _check_name(name: str) -> None:
    low, high = NAME_LENGTH
    if not low <= len(name) <= high:
        raise AdminError(f"fleet names are {low} to {high} characters")


def fleet_id(cur: psycopg2.extensions.cursor, fleet: str | None, create: bool = True) -> int | None:
    """The id of the fleet called ``fleet``; None for None. A fleet that does not exist is
    created, or with ``create=False`` refused (AdminError): a mistyped name on the command
    line must not make a new, empty fleet that nobody sees."""
    if fleet is None:
        return None
    _check_name(fleet)
    if not create:
        cur.execute("SELECT id FROM fleets WHERE name = %s", (fleet,))
        row = cur.fetchone()
        if row is None:
            raise no_such_fleet(fleet)
        return int(row[0])
    cur.execute(
        "INSERT INTO fleets (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
        " RETURNING id",
        (fleet,),
    )
    return int(cur.fetchone()[0])


# -- cmsv6 fleet add, fleet list ------------------------------------------------------------


@frozen
class FleetInfo:
    name: str
    devices: int
    users: int  # operators and admins given the fleet (admins see every fleet anyway)
    created: datetime


def add_fleet(dsn: str, name: str, by: str | None = None) -> bool:
    """Add a fleet (``cmsv6 fleet add``) and audit it; False if it already existed
    (nothing changes)."""
    from cmsv6.db.users import audit  # users imports this module

    _check_name(name)
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO fleets (name) VALUES (%s) ON CONFLICT (name) DO NOTHING RETURNING id",
                (name,),
            )
            row = cur.fetchone()
            if row is None:
                return False
            audit(cur, "fleet.add", {"fleet": name, "id": row[0]}, by)
    finally:
        conn.close()
    return True


def list_fleets(dsn: str) -> list[FleetInfo]:
    """Every fleet by name, with how many devices it has and how many users are given it."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT f.name,"
                " (SELECT count(*) FROM devices d WHERE d.fleet_id = f.id),"
                " (SELECT count(*) FROM user_fleets uf WHERE uf.fleet_id = f.id),"
                " f.created FROM fleets f ORDER BY f.name"
            )
            return [FleetInfo(*row) for row in cur.fetchall()]
    finally:
        conn.close()
