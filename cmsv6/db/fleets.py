"""Fleets, and what a user may see: the fleet visibility every user-facing query applies.

Visibility is decided here, in SQL: an admin sees every device; an operator sees the
devices of the fleets in ``user_fleets``. A device a user may not see is reported exactly
as one that does not exist, so the API never leaks its existence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg2

if TYPE_CHECKING:
    from cmsv6.db.users import User

# The visibility test on ``devices d`` for the user in %(uid)s / %(admin)s.
VISIBLE = "(%(admin)s OR d.fleet_id IN (SELECT fleet_id FROM user_fleets WHERE user_id = %(uid)s))"


def who(user: User, **more: Any) -> dict[str, Any]:
    """The query arguments of ``VISIBLE`` for ``user`` (and ``more``)."""
    return {"uid": user.id, "admin": user.admin, **more}


def fleet_id(cur: psycopg2.extensions.cursor, fleet: str | None) -> int | None:
    """The id of the fleet called ``fleet`` (created if new); None for None."""
    if fleet is None:
        return None
    cur.execute(
        "INSERT INTO fleets (name) VALUES (%s) ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name"
        " RETURNING id",
        (fleet,),
    )
    return int(cur.fetchone()[0])
