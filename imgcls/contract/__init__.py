"""The bottom layer: names, errors and file layouts shared by every step.

Everything else depends downward on this package; it imports nothing of the
project's.
"""
