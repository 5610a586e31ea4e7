"""Paid subscriptions: payments into periods, cancellation at period end, expiry (see processor.py)."""
