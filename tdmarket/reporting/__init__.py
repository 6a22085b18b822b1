"""Reporting: results folders, summaries, comparison reports."""
