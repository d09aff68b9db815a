"""Ringwatch models."""
