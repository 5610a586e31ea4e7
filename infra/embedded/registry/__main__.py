"""Run the registry alone: ``python -m infra.embedded.registry`` with ``GLASSCAST_*`` settings."""

from __future__ import annotations

import os

from infra.embedded.registry.app import serve_registry
from infra.settings import load_settings


def main() -> None:
    """Read the settings from the environment and serve until interrupted."""
    serve_registry(load_settings(os.environ))


if __name__ == "__main__":
    main()
