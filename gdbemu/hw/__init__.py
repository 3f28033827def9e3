"""Devices (issue: the machine)."""
