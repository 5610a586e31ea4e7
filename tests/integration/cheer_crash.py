"""A gateway process whose cheer path dies by SIGKILL at a chosen step (a child of test_bits_ledger.py).

    python -m tests.integration.cheer_crash after_log|before_log CHANNEL USER USERNAME BITS NONCE

``after_log``: killed once the ledger acknowledged the ``BitsCheered`` and
before the room was told; ``before_log``: killed after the hold, before the
record was produced.  Settings come from the environment (tests/servers.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from prometheus_client import CollectorRegistry

from gateways.chat.frames import ClientFrame
from gateways.chat.send import send_message
from gateways.services import open_services
from infra.settings import load_settings


def die(*_: Any, **__: Any) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


async def main(step: str, channel_id: str, user_id: str, username: str, bits: int, nonce: str) -> None:
    settings = load_settings(os.environ)
    async with open_services(settings, CollectorRegistry()) as svc:
        if step == "after_log":
            svc.ledger.logged_call = die  # type: ignore[method-assign]
        else:
            svc.chat.log.send = die  # type: ignore[method-assign]
        await send_message(svc, channel_id, user_id, username, False,
                           ClientFrame("send", text=f"cheer{bits} crash", nonce=nonce))
    raise SystemExit("the cheer path was not killed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]))
