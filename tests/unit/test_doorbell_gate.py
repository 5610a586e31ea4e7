"""The doorbell's gate (topics/doorbell.py): when an idle consumer may pause, pure, the time passed in."""

from __future__ import annotations

from infra.settings import KafkaSettings, Settings, with_doorbell
from topics.doorbell import PROBE_MAX_S, IdleGate, channel, enabled, new_gate


def gate() -> IdleGate:
    return new_gate(KafkaSettings(idle_check_ms=5000), now=100.0)


def test_a_new_consumer_stays_resumed_for_a_linger_then_may_pause() -> None:
    g = gate()
    assert not g.paused and not g.should_pause(100.0 + g.linger_s - 0.01)
    assert g.should_pause(100.0 + g.linger_s)


def test_a_record_or_a_ring_extends_the_linger() -> None:
    g = gate()
    g.wake(101.5)
    assert not g.should_pause(100.0 + g.linger_s)
    assert g.should_pause(101.5 + g.linger_s)


def test_a_paused_consumer_checks_once_per_interval_and_a_probe_ends_at_the_end_of_its_partitions() -> None:
    g = gate()
    g.paused_at(110.0)
    assert g.paused and not g.should_pause(110.0)
    assert not g.check_due(114.9) and g.check_due(115.0)
    g.resumed(115.0, probe=True)
    assert g.probing and not g.should_pause(115.0)
    assert g.should_pause(115.0 + PROBE_MAX_S)  # no end of partition reported: give up at the bound
    g.probe_done(115.01)
    assert g.should_pause(115.01)


def test_a_record_during_a_probe_keeps_the_consumer_awake_for_a_linger() -> None:
    g = gate()
    g.paused_at(110.0)
    g.resumed(115.0, probe=True)
    g.wake(115.02)
    g.probe_done(115.03)  # ignored: it is no longer a probe
    assert not g.should_pause(115.03) and g.should_pause(115.02 + g.linger_s)


def test_a_ring_resumes_for_a_linger() -> None:
    g = gate()
    g.paused_at(110.0)
    g.resumed(111.0, probe=False)
    assert not g.paused and not g.probing
    assert not g.should_pause(111.0 + g.linger_s - 0.01) and g.should_pause(111.0 + g.linger_s)


def test_the_doorbell_uses_the_valkey_url_unless_switched_off_or_named() -> None:
    base = Settings().with_section("valkey", url="redis://127.0.0.1:1/0")
    assert with_doorbell(base).kafka.doorbell_url == "redis://127.0.0.1:1/0"
    assert enabled(with_doorbell(base).kafka)
    off = base.with_section("kafka", doorbell=False)
    assert not enabled(with_doorbell(off).kafka)
    named = base.with_section("kafka", doorbell_url="redis://elsewhere:6379/0")
    assert with_doorbell(named).kafka.doorbell_url == "redis://elsewhere:6379/0"
    assert not enabled(Settings().kafka)  # no Valkey known: no doorbell
    assert channel(KafkaSettings(client_id="gc"), "users") == "gc:doorbell:users"
