"""Ringwatch edge."""
