"""Maintenance commands for this repository (not part of the installed package)."""
