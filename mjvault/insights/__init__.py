"""Insights: what a vault's jobs say over time (activity, models, terms, cost), from counters
the index keeps (aggregates) and one document built from them (compute)."""
