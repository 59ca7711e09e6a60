"""Send a text message to a vehicle's display (JT/T 808 0x8300) and wait for its answer.

    python3 text_message.py [PHONE] [TEXT]
"""

import sys

from cmsv6_api import ApiError, call, login

phone = sys.argv[1] if len(sys.argv) > 1 else "13900000000"
text = sys.argv[2] if len(sys.argv) > 2 else "Please call the dispatcher"
token = login()
try:
    # flag 8: show it on the display (4: read it out, too). The call returns when the device
    # answers, or 504 after `timeout` seconds.
    answer = call("POST", f"/api/v1/devices/{phone}/commands",
                  {"type": "text", "text": text, "flag": 8, "timeout": 10}, token=token)
except ApiError as e:
    if e.code == "device_offline":
        sys.exit(f"{phone} is offline")
    raise
reply = answer["reply"]  # the device's general response (0x0001): result 0 is "ok"
result = reply["body"].get("result")
print(f"command {answer['command']}: {phone} answered {reply['msg_id']}, result {result}"
      f" ({'ok' if result == 0 else 'refused'})")
