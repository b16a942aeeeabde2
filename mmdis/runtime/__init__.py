"""Runtime helpers below everything else: atomic file writes, device and precision, peak memory, machine.

Nothing here knows about the paper; data, models, training and evaluation all build on it.
"""
