"""Raids and host mode: the countdowns that go ahead at their deadline, and the views folded from ``raids``."""
