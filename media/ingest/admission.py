"""Who may hold one of the ingest's connection slots: caps per client, and room for a publisher in a flood.

An RTMP connection costs a slot from the moment it is accepted, but it only proves anything at
``publish``, when its stream key is checked.  Until then it is *pending*.  The table here keeps the
slots (``max_connections`` in all) and decides, at each accept, one of:

- refuse: the client (one IP address, or one /64 for IPv6, which a single host usually owns
  whole) already holds ``max_pending_per_client`` pending connections.  Publishing connections do
  not count against it: each holds a valid key, and a channel takes one publisher at a time.
- admit, and evict a pending connection to make room, when every slot is taken.  The victim is
  the oldest pending connection of the client with the most pending connections, provided that
  client holds more of them than the newcomer's client does.  So a flood from a few addresses
  churns among its own connections, while a publisher from an address with none pending always
  gets in; an attacker would need a distinct address per slot to push it out, and even then it
  goes oldest-first, after every connection that came before it.  (Reserving a share of the
  slots instead would still let a flood from many addresses fill that share for good.)
- refuse, when every slot is taken and no pending connection may be evicted.

The table is pure: no sockets and no clock (arrival order is a counter).  The server closes the
connections it names; a connection that has missed its deadline to publish is closed by its
session (``media.ingest.session``), and each one is ``release``\\d when its session ends.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["Admission", "AdmissionLimits", "Admit", "Refuse", "client_of"]

#: IPv6 hosts get a /64 each (RFC 4291 section 2.5.4, RFC 7421): any address in it is the same client.
IPV6_CLIENT_PREFIX = 64


def client_of(host: str) -> str:
    """The client a peer address counts against: the IPv4 address, or the IPv6 /64 it is in."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP (a Unix socket path, say): the name is the client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


@dataclass(frozen=True)
class AdmissionLimits:
    max_connections: int
    max_pending_per_client: int

    def __post_init__(self) -> None:
        if self.max_connections < 1 or self.max_pending_per_client < 1:
            raise ValueError("connection limits must be at least 1")


@dataclass(frozen=True)
class Admit:
    """Take the connection; first close ``evict`` (a pending connection) if it is set."""

    evict: str | None = None


@dataclass(frozen=True)
class Refuse:
    """Close the connection at once, for ``reason`` (which names no credential)."""

    reason: str


@dataclass
class _Slot:
    client: str
    arrival: int
    publishing: bool = False


@dataclass
class Admission:
    """The connection slots of one ingest process."""

    limits: AdmissionLimits
    _slots: dict[str, _Slot] = field(default_factory=dict)
    _pending: dict[str, dict[str, int]] = field(default_factory=dict)  # client -> {connection: arrival}
    _arrivals: int = 0

    def __len__(self) -> int:
        return len(self._slots)

    def pending_of(self, client: str) -> int:
        """How many of ``client``'s connections have not published."""
        return len(self._pending.get(client, ()))

    def admit(self, connection: str, client: str) -> Admit | Refuse:
        """Decide on a new connection; an admitted one (and no evicted one) is in the table after."""
        if connection in self._slots:
            raise ValueError(f"connection {connection} is already admitted")
        mine = self.pending_of(client)
        if mine >= self.limits.max_pending_per_client:
            return Refuse(f"{mine} connections from {client} are waiting to publish already")
        evict = None
        if len(self._slots) >= self.limits.max_connections:
            evict = self._victim(mine)
            if evict is None:
                return Refuse(f"all {self.limits.max_connections} connections are taken")
            self.release(evict)
        self._arrivals += 1
        self._slots[connection] = _Slot(client, self._arrivals)
        self._pending.setdefault(client, {})[connection] = self._arrivals
        return Admit(evict)

    def _victim(self, newcomer_pending: int) -> str | None:
        """The oldest pending connection of the heaviest client, if it holds more than the newcomer's."""
        best: tuple[int, int, str] | None = None  # (-count, oldest arrival, connection)
        for connections in self._pending.values():
            oldest = min(connections, key=connections.__getitem__)
            candidate = (-len(connections), connections[oldest], oldest)
            if best is None or candidate < best:
                best = candidate
        if best is None or -best[0] <= newcomer_pending:
            return None
        return best[2]

    def set_publishing(self, connection: str, publishing: bool) -> None:
        """The connection's stream key was accepted (True), or it stopped publishing (False)."""
        slot = self._slots.get(connection)
        if slot is None or slot.publishing == publishing:
            return
        slot.publishing = publishing
        if publishing:
            self._forget_pending(connection, slot.client)
        else:
            self._arrivals += 1  # pending again, and the newest: it just proved a key
            slot.arrival = self._arrivals
            self._pending.setdefault(slot.client, {})[connection] = slot.arrival

    def release(self, connection: str) -> None:
        """The connection ended (or was evicted); releasing it twice is harmless."""
        slot = self._slots.pop(connection, None)
        if slot is not None and not slot.publishing:
            self._forget_pending(connection, slot.client)

    def _forget_pending(self, connection: str, client: str) -> None:
        connections = self._pending.get(client)
        if connections is None:
            return
        connections.pop(connection, None)
        if not connections:
            del self._pending[client]
