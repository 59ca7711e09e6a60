"""Packaging is declared in setup.cfg; this adds what it cannot say: Twisted's plugin
package, which holds only our plugin file (twisted/plugins has no __init__.py of ours, so
``find:`` does not see it, and it must never be listed as a package of its own). Its file
is package data in setup.cfg with the rest: a ``package_data`` given here would replace
setup.cfg's whole table (the schema and the web client would be left out of the wheel)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["cmsv6", "cmsv6.*"]) + ["twisted.plugins"],
)
