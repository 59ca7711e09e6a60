"""Test support, once: scripted devices, waits bounded in time, server processes, the corpus."""
