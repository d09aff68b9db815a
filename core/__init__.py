"""Ringwatch: edge video analytics for campus rings and e-bike sheds, and a central hub."""

__version__ = "0.1.0"
