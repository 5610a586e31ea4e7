"""The Valkey key a processors worker writes once it owns its partitions.

Readiness for operators, the gateway's ``/readyz`` and tests: Tansu's
DescribeGroups reports no members, so the processors announce their assignment
here instead (docs/ARCHITECTURE.md, "Processors").  It lives with the read
models so that the gateway and the supervisor can read it without importing
the Faust app.
"""

from __future__ import annotations

from infra.settings import Settings


def ready_key(settings: Settings) -> str:
    """Valkey key a processors worker writes when it has been assigned its partitions."""
    return f"{settings.valkey.key_prefix}processors:{settings.processors.app_id}:assigned"
