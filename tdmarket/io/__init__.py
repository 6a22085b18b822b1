"""Readers and writers (data layer)."""
