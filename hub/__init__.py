"""Ringwatch hub."""
