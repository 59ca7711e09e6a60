"""The DVR simulator: many JT/T 808 terminals in one process (``cmsv6 sim``).

``device`` is one terminal's behaviour, sans-IO (time comes in as ``now``, frames go out
through a two-method link); ``route`` moves its vehicle; ``protocol`` is the thin Twisted
protocol; ``fleet`` runs thousands of devices on one shared timer and is the library API
for tests and benchmarks; ``cli`` is the command; ``fakeplatform`` is a minimal platform to
run them against without a gateway.
"""
