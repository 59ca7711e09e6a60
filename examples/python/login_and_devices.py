"""Log in, then list the vehicles this user may see with their last positions.

    python3 login_and_devices.py
"""

from cmsv6_api import call, login

token = login()
devices = call("GET", "/api/v1/devices", token=token)  # at most 1000 a page: see docs/api.md
for device in devices:
    where = device["last_position"]  # null until the device has reported
    if where is None:
        print(f"{device['phone']} {device['plate']}: no position yet")
        continue
    state = "online" if device["online"] else "offline"
    # Latitude and longitude are signed degrees (WGS-84); times are UTC.
    print(f"{device['phone']} {device['plate']} {state}: {where['latitude']:.6f},"
          f" {where['longitude']:.6f} at {where['speed']} km/h, {where['time']}")
print(f"{len(devices)} devices")
