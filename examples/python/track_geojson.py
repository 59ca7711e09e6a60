"""A day's track of one vehicle as GeoJSON, written to a file any map reads (Leaflet,
QGIS, geojson.io).

    python3 track_geojson.py [PHONE] [OUTPUT]
"""

import json
import sys
from datetime import datetime, timedelta, timezone

from cmsv6_api import call, login

phone = sys.argv[1] if len(sys.argv) > 1 else "13900000000"
output = sys.argv[2] if len(sys.argv) > 2 else "track.geojson"
token = login()
end = datetime.now(timezone.utc)
query = {"from": (end - timedelta(days=1)).isoformat(), "to": end.isoformat(), "limit": 1000}
points = []
while True:  # paged: follow "next" until it is null
    page = call("GET", f"/api/v1/devices/{phone}/track", token=token, query=query)
    points += [f for f in page["features"] if f["geometry"]["type"] == "Point"]
    if page["next"] is None:
        break
    query["after"] = page["next"]
# One FeatureCollection: the whole line (coordinates are [longitude, latitude]), then the points.
line = [p["geometry"]["coordinates"] for p in points]
features = ([{"type": "Feature", "geometry": {"type": "LineString", "coordinates": line},
              "properties": {"phone": phone}}] if len(line) >= 2 else []) + points
with open(output, "w") as f:
    json.dump({"type": "FeatureCollection", "features": features}, f)
alarms = sum(1 for p in points if p["properties"]["alarms"])
print(f"{phone}: {len(points)} positions ({alarms} with alarms) written to {output}")
