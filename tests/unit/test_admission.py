"""The ingest's connection slots: caps per client, and who makes room when every slot is taken."""

from __future__ import annotations

import pytest

from media.ingest.admission import Admission, AdmissionLimits, Admit, Refuse, client_of


def _table(max_connections: int = 8, per_client: int = 4) -> Admission:
    return Admission(AdmissionLimits(max_connections, per_client))


def test_a_client_is_capped_on_connections_that_have_not_published() -> None:
    table = _table()
    assert [table.admit(f"a{i}", "10.0.0.1") for i in range(4)] == [Admit()] * 4
    refused = table.admit("a4", "10.0.0.1")
    assert isinstance(refused, Refuse) and "10.0.0.1" in refused.reason
    assert table.admit("b0", "10.0.0.2") == Admit()
    # A publishing connection no longer counts against its client; a closed one frees its place.
    table.set_publishing("a0", True)
    assert table.admit("a4", "10.0.0.1") == Admit()
    table.release("a1")
    table.release("a1")
    assert table.pending_of("10.0.0.1") == 3 and len(table) == 5


def test_a_full_table_evicts_the_oldest_pending_connection_of_the_heaviest_client() -> None:
    table = _table(max_connections=6, per_client=4)
    for i in range(4):
        assert table.admit(f"a{i}", "10.0.0.1") == Admit()
    for i in range(2):
        assert table.admit(f"b{i}", "10.0.0.2") == Admit()
    assert table.admit("new", "10.0.0.3") == Admit(evict="a0")
    assert len(table) == 6 and table.pending_of("10.0.0.1") == 3
    # The heaviest client cannot make room for itself: it is refused instead.
    assert isinstance(table.admit("a9", "10.0.0.1"), Refuse)
    # A lighter one can, at the heaviest client's expense (its oldest pending connection first).
    assert table.admit("b9", "10.0.0.2") == Admit(evict="a1")
    assert (table.pending_of("10.0.0.1"), table.pending_of("10.0.0.2")) == (2, 3)


def test_a_full_table_of_equals_refuses_a_client_that_has_as_many() -> None:
    table = _table(max_connections=2, per_client=4)
    assert table.admit("a", "10.0.0.1") == Admit() and table.admit("b", "10.0.0.2") == Admit()
    assert table.admit("c", "10.0.0.3") == Admit(evict="a")  # newcomer has none pending: oldest goes
    assert isinstance(table.admit("d", "10.0.0.2"), Refuse)  # b's client already holds as many as anyone


def test_publishers_are_never_evicted() -> None:
    table = _table(max_connections=2)
    table.admit("a", "10.0.0.1")
    table.admit("b", "10.0.0.2")
    table.set_publishing("a", True)
    table.set_publishing("b", True)
    refused = table.admit("c", "10.0.0.3")
    assert isinstance(refused, Refuse) and "all 2 connections" in refused.reason
    table.set_publishing("b", False)  # unpublished: pending again, and evictable
    assert table.admit("c", "10.0.0.3") == Admit(evict="b")


def test_an_admitted_connection_cannot_be_admitted_twice() -> None:
    table = _table()
    table.admit("a", "10.0.0.1")
    with pytest.raises(ValueError, match="already admitted"):
        table.admit("a", "10.0.0.1")


@pytest.mark.parametrize(("host", "client"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("/run/ingest.sock", "/run/ingest.sock"),
])
def test_clients_are_addresses_and_ipv6_64s(host: str, client: str) -> None:
    assert client_of(host) == client


def test_limits_must_allow_one_connection() -> None:
    with pytest.raises(ValueError):
        AdmissionLimits(0, 4)
