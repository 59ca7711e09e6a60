"""Find the alarms nobody has looked at yet, and acknowledge the oldest with a note.

    python3 handle_alarm.py
"""

import sys

from cmsv6_api import call, login

token = login()
# state=new: every new alarm however old (without it: the alarms of the last day).
page = call("GET", "/api/v1/alarms", token=token, query={"state": "new", "limit": 100})
if not page["alarms"]:
    sys.exit("no new alarms")
for alarm in page["alarms"]:
    print(f"alarm {alarm['id']}: {alarm['kind']} on {alarm['phone']} since {alarm['started']}"
          f"{' (ended)' if alarm['ended'] else ''}")
oldest = page["alarms"][0]
# acknowledged, handled or dismissed; who and when are recorded (and in the audit log).
done = call("POST", f"/api/v1/alarms/{oldest['id']}",
            {"state": "acknowledged", "note": "seen by the integration example"}, token=token)
print(f"alarm {done['id']} {done['state']} by {done['handled_by']} at {done['handled']}")
