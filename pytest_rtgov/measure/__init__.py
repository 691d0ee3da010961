"""Measurement edges: the clock, memory probes and GPU events."""
