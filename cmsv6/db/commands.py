"""Commands sent to devices from the Open API, their results, and their audit rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from twisted.internet import defer

from cmsv6.db.service import Database
from cmsv6.db.users import User


@defer.inlineCallbacks
def start_command(
    db: Database, user: User, device_id: int, phone: str, msg_id: int, command: Any,
    now: datetime,
) -> Any:  # fmt: skip
    """Record a command about to be sent (status pending) and audit it; its id."""

    @defer.inlineCallbacks
    def txn(cur: Any) -> Any:
        yield cur.execute(
            "INSERT INTO commands (device_id, user_id, msg_id, body, created, status)"
            " VALUES (%s, %s, %s, %s::jsonb, %s, 'pending') RETURNING id",
            (device_id, user.id, msg_id, json.dumps(command, ensure_ascii=False), now),
        )
        (command_id,) = cur.fetchone()
        yield cur.execute(
            "INSERT INTO audit (time, user_id, action, details) VALUES (%s, %s, %s, %s::jsonb)",
            (now, user.id, "command",
             json.dumps({"command": command_id, "phone": phone, "msg_id": f"0x{msg_id:04x}"})),
        )  # fmt: skip
        return command_id

    command_id = yield db.run_interaction(txn)
    return command_id


def finish_command(
    db: Database, command_id: int, status: str, reply: Any, now: datetime
) -> defer.Deferred[None]:
    """A command's outcome: replied / timeout / offline / failed, with the decoded reply."""
    return db.run_operation(
        "UPDATE commands SET status = %s, reply = %s::jsonb, finished = %s WHERE id = %s",
        (status, json.dumps(reply, ensure_ascii=False) if reply is not None else None, now,
         command_id),
    )  # fmt: skip


def refuse_command(
    db: Database, user: User, phone: str, msg_id: int, reason: str, now: datetime
) -> defer.Deferred[None]:
    """Audit a command the user may not send (nothing was sent, so no ``commands`` row)."""
    return db.run_operation(
        "INSERT INTO audit (time, user_id, action, details) VALUES (%s, %s, %s, %s::jsonb)",
        (now, user.id, "command_refused",
         json.dumps({"phone": phone, "msg_id": f"0x{msg_id:04x}", "reason": reason})),
    )  # fmt: skip
