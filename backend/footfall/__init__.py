"""Footfall: a self-hosted behavioral-event collector."""

__version__ = "0.1.0"
