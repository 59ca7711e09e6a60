"""Webhooks: events of the platform pushed to other systems over HTTP.

An admin registers a webhook through the Open API (``POST /api/v1/webhooks``: a URL, the
events it wants, a secret). Where events come from: triggers in PostgreSQL (schema step
0007) write one row per event and interested webhook into ``webhook_deliveries`` (the
outbox) in the very transaction that records the fact, so an event exists exactly when
its fact was committed, whichever server wrote it (a gateway's alarm, a gateway's device
session, the Open API's command outcome), and survives any server's crash.
``cmsv6.webhooks.dispatcher`` (run by the active login server only) POSTs the outbox to
the webhooks, signed (``cmsv6.webhooks.signing``), retrying with exponential back-off,
and deletes a row once its webhook answered 2xx: delivery is at least once, and each
event has an id to de-duplicate by.
"""

from __future__ import annotations

#: The events a webhook may ask for, and what each says.
EVENTS = {
    "alarm.opened": "A device raised an alarm (an alarm bit, a video or active-safety alarm)",
    "alarm.closed": "An alarm ended: the device cleared its bit",
    "alarm.handled": "A user acknowledged, handled or dismissed an alarm",
    "device.online": "A device connected to a gateway",
    "device.offline": "A device's last connection to a gateway ended",
    "command.answered": "A device answered a command sent through the Open API",
}
