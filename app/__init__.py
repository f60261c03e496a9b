"""Treadle: durable workflow orchestration."""
