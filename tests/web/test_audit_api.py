"""The audit log through the Open API: admins only, newest first, paged, filtered."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest_twisted

from tests.support.database import query
from tests.web.support import NORTH, SOUTH, T0, Web, add_alarm, call, login


def audit_row(web: Web, time: datetime, action: str, details: str, user: str | None = None) -> int:
    return int(query(
        web.dsn, "INSERT INTO audit (time, user_id, action, details) VALUES"
        " (%s, (SELECT id FROM users WHERE name = %s), %s, %s::jsonb) RETURNING id",
        (time, user, action, details),
    )[0][0])  # fmt: skip


@pytest_twisted.inlineCallbacks
def test_admin_reads_what_was_done(web: Web) -> None:
    """What users do through the API (a command, a refused command, an alarm handled) is
    in the audit, newest first, with who did it and the device's phone."""
    web.cluster.gateways = {NORTH: "gw-1"}
    olga = yield login(web, "olga")
    yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands", {"type": "query_position"},
               token=olga)  # fmt: skip
    yield call(web, "POST", f"/api/v1/devices/{NORTH}/commands",
               {"type": "terminal_control", "command": 4}, token=olga)  # fmt: skip
    alarm = add_alarm(web.dsn, web.device_id(NORTH), "bit:emergency", T0)
    yield call(web, "POST", f"/api/v1/alarms/{alarm}", {"state": "handled"}, token=olga)
    admin = yield login(web, "root")
    reply = yield call(web, "GET", "/api/v1/audit", token=admin)
    assert reply.status == 200, reply.body
    rows = reply.body["audit"]
    assert [(r["action"], r["user"], r["details"]["phone"]) for r in rows] == [
        ("alarm.handle", "olga", NORTH), ("command_refused", "olga", NORTH),
        ("command", "olga", NORTH),
    ]  # fmt: skip
    assert rows[2]["details"]["msg_id"] == "0x8201"
    assert reply.body["next"] is None


@pytest_twisted.inlineCallbacks
def test_operators_may_not_read_it(web: Web) -> None:
    """An operator (or no token) gets 403 (401), not the log."""
    audit_row(web, T0, "command", '{"phone": "13800000001"}', "olga")
    token = yield login(web, "olga")
    reply = yield call(web, "GET", "/api/v1/audit", token=token)
    assert reply.status == 403 and reply.body["error"]["code"] == "forbidden"
    reply = yield call(web, "GET", "/api/v1/audit")
    assert reply.status == 401


@pytest_twisted.inlineCallbacks
def test_filtered_and_paged(web: Web) -> None:
    """Filters by time, user (the API user or the details' ``by``), device and action
    (the command line's, or a gateway's "gw-1: NAME") narrow the log; following ``next`` gives each row once, newest first."""
    rows = {
        "a": audit_row(web, T0, "command", f'{{"phone": "{NORTH}"}}', "olga"),
        "b": audit_row(web, T0 + timedelta(minutes=1), "command", f'{{"phone": "{SOUTH}"}}', "root"),
        "c": audit_row(web, T0 + timedelta(minutes=2), "device.add",
                       f'{{"phone": "{NORTH}", "by": "ops", "via": "cli"}}'),
        "d": audit_row(web, T0 + timedelta(minutes=2), "alarm.handle", f'{{"phone": "{NORTH}"}}', "olga"),
        "e": audit_row(web, T0 + timedelta(minutes=3), "gateway command", '{"by": "gw-1: olga"}'),
        "f": audit_row(web, T0 + timedelta(minutes=4), "gateway command", '{"by": "gw-1: xolga"}'),
    }  # fmt: skip
    token = yield login(web, "root")
    since = "from=2026-11-25T00:00:00Z"

    def ids(reply: object) -> list[int]:
        assert reply.status == 200, reply.body  # type: ignore[attr-defined]
        return [r["id"] for r in reply.body["audit"]]  # type: ignore[attr-defined]

    everything = yield call(web, "GET", "/api/v1/audit", token=token)  # no default start
    assert ids(everything) == [rows[k] for k in ("f", "e", "d", "c", "b", "a")]
    for query_text, want in [
        ("user=olga", "eda"), ("user=ops", "c"), (f"device=0{NORTH}", "dca"),
        ("action=command", "ba"), ("from=2026-11-25T02:01:00Z&to=2026-11-25T02:03:00Z", "dcb"),
        ("user=xolga", "f"), ("user=%25olga", ""),
        (f"user=olga&device={NORTH}&action=command", "a"),
    ]:
        reply = yield call(web, "GET", f"/api/v1/audit?{since}&{query_text}", token=token)
        assert ids(reply) == [rows[k] for k in want], query_text
    seen: list[int] = []
    after = ""
    for _ in range(6):
        reply = yield call(web, "GET", f"/api/v1/audit?{since}&limit=2{after}", token=token)
        seen += ids(reply)
        if reply.body["next"] is None:
            break
        after = f"&after={reply.body['next']}"
    assert seen == ids(everything)
    for bad in ("user=" + "x" * 65, "user=", "device=phone!", "after=garbage", "from=yesterday",
                "limit=0", "after=2026-11-25T02:00:00Z~" + "9" * 30, "to=10000-01-01"):
        reply = yield call(web, "GET", f"/api/v1/audit?{bad}", token=token)
        assert reply.status == 400, bad
