"""Packaging is declared in setup.cfg; this adds what it cannot say: Twisted's plugin
package, which holds only our plugin file (twisted/plugins has no __init__.py of ours, so
``find:`` does not see it, and it must never be listed as a package of its own)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["cmsv6", "cmsv6.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["cmsv6_servers.py"]},
)
