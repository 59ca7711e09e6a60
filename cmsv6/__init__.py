"""cmsv6: an open-source back end for vehicle mobile DVRs (JT/T 808 and JT/T 1078)."""

__version__ = "0.1.0"
