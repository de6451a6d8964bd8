"""Devices over SSH: the agent a device runs (agent.py), where a device is (address.py), one call of it (session.py)."""
