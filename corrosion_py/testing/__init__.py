"""Helpers for tests, benchmarks and examples (as ``trio.testing`` is for trio): an agent or a
membership-only node as its own OS process, driven by JSON lines, and launchers that start
clusters of them and kill what they started by PID."""
