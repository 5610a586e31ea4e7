"""Who may read ``/metrics``: clients on configured networks, or with the configured bearer token.

Prometheus metrics tell an outsider what runs, how busy it is and which
routes fail, so the gateway answers them only to its operators: a client
whose address is in ``gateway.metrics_networks`` (loopback by default; a
scraper inside the cluster), or one that presents ``gateway.metrics_token``
as ``Authorization: Bearer`` (RFC 6750 section 2.1), compared in constant time.
Pure: the handler in gateways/health.py passes the address and header in.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class MetricsAccess:
    """The networks and token that may read metrics (an empty token admits nobody by token)."""

    networks: tuple[IpNetwork, ...]
    token: str = ""

    @classmethod
    def of(cls, networks: Iterable[str], token: str) -> MetricsAccess:
        """From settings' CIDR strings (checked at start-up, infra/settings.py) and token."""
        return cls(tuple(ipaddress.ip_network(n, strict=False) for n in networks), token)

    def allows(self, client_host: str | None, authorization: str | None) -> bool:
        """Whether a client at ``client_host`` sending this Authorization header may read metrics."""
        if self.token and authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), self.token.encode()):
                return True
        if client_host is None:
            return False
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:  # a Unix socket path or a test client's name: not an address on any network
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 from a dual-stack socket is 127.0.0.1
        return any(address in network for network in self.networks)
