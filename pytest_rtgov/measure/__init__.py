"""Measurement edges, to the machine: the clock, measured regions, memory probes, GPU
events, the calibration kernel, and the facts of the environment and git checkout.
"""
