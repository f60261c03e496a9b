"""Peer engines, each driven through the same `bench._engine.Engine` interface as Treadle."""
