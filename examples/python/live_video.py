"""Get a live video URL of a vehicle's camera and print the ffplay command that plays it.

    python3 live_video.py [PHONE] [CHANNEL]
"""

import sys

from cmsv6_api import call, login

phone = sys.argv[1] if len(sys.argv) > 1 else "13900000000"
channel = int(sys.argv[2]) if len(sys.argv) > 2 else 1
token = login()
live = call("POST", f"/api/v1/devices/{phone}/live", {"channel": channel, "stream": "sub"},
            token=token)
# The URL carries a viewing token for this device and channel: open it before "expires"
# (two minutes). The device starts streaming when the first viewer connects.
print(f"codec {live['codec'] or 'not known yet'}, audio {live['audio'] or 'none announced'},"
      f" open before {live['expires']}")
print(f"ffplay -fflags nobuffer '{live['http_flv']}'")
print(f"browser (mpegts.js, flv.js): {live['ws_flv']}")
