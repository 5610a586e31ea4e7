"""The ledger folds (views/ledger.py) under any interleaving of purchases, cheers, retries, refunds and chargebacks.

Payments go through ``apply_payment`` (per order, redelivered and out of
order), cheers through ``admit_cheer`` (retries reuse a nonce), and every
ledger event through ``apply_ledger``, redelivered at random.  After every
step the balance is never negative, ``balance - owed`` is what was bought
minus what was spent or reversed (each purchase, cheer and reversal counted
once), and replaying the log, in its order or any other, gives the same account.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.records.billing import (
    BitsChargedBack,
    BitsCheered,
    BitsPurchased,
    BitsRefunded,
    OrderPlaced,
    PaymentReversed,
    PaymentSucceeded,
)
from views.ledger import (
    Account,
    LedgerEvent,
    OrderState,
    admit_cheer,
    apply_ledger,
    apply_payment,
    cheer_event_id,
    cheer_id,
)

USER, CHANNEL = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
ORDERS = [str(uuid.UUID(int=100 + i)) for i in range(4)]
PACKS = [100, 500, 1000, 1500]

step = st.one_of(
    st.tuples(st.just("place"), st.integers(0, 3)),
    st.tuples(st.just("pay"), st.integers(0, 3)),
    st.tuples(st.just("refund"), st.integers(0, 3)),
    st.tuples(st.just("chargeback"), st.integers(0, 3)),
    st.tuples(st.just("cheer"), st.integers(0, 6), st.integers(1, 700)),  # a nonce (retries reuse one), bits
    st.tuples(st.just("redeliver"), st.integers(0, 1_000)),
)


@dataclass
class World:
    log: list[LedgerEvent] = field(default_factory=list)
    orders: dict[str, OrderState] = field(default_factory=dict)
    account: Account = field(default_factory=Account)
    paid: set[str] = field(default_factory=set)
    reversed: set[str] = field(default_factory=set)
    cheers: dict[str, int] = field(default_factory=dict)

    def record(self, event: LedgerEvent) -> None:
        self.log.append(event)
        self.account = apply_ledger(event, self.account)

    def payment(self, event: OrderPlaced | PaymentSucceeded | PaymentReversed) -> None:
        state, caused = apply_payment(event, self.orders.get(event.order_id))
        self.orders[event.order_id] = state
        for e in caused:
            self.record(e)


def run(steps: list[tuple[object, ...]]) -> World:
    w = World()
    for i, s in enumerate(steps):
        kind = s[0]
        if kind in ("place", "pay", "refund", "chargeback"):
            n = int(s[1])  # type: ignore[call-overload]
            order, bits = ORDERS[n], PACKS[n]
            if kind == "place":
                w.payment(OrderPlaced(occurred_at=i, order_id=order, provider="sandbox", kind="BITS", user_id=USER,
                                      bits=bits, amount_minor=bits, currency="USD", description="pack"))
            elif kind == "pay":
                w.payment(PaymentSucceeded(occurred_at=i, order_id=order, provider="stripe",
                                           provider_event_id=f"evt_{i}", kind="BITS", user_id=USER, bits=bits,
                                           amount_minor=bits, currency="USD"))
                w.paid.add(order)
            else:
                w.payment(PaymentReversed(occurred_at=i, order_id=order, provider="stripe",
                                          provider_event_id=f"evt_{i}",
                                          kind="REFUND" if kind == "refund" else "CHARGEBACK",
                                          amount_minor=bits, currency="USD"))
                w.reversed.add(order)
        elif kind == "cheer":
            cheer, bits = cheer_id(USER, CHANNEL, f"n{s[1]}"), int(s[2])  # type: ignore[call-overload]
            admission = admit_cheer(w.account, {}, cheer, bits)
            if admission.outcome == "held":
                w.cheers[cheer] = bits
                w.record(BitsCheered(event_id=cheer_event_id(cheer), occurred_at=i, cheer_id=cheer, user_id=USER,
                                     username="u", channel_id=CHANNEL, bits=bits, text=f"cheer{bits}"))
            else:
                assert admission.outcome in ("short", "duplicate")
                assert admission.outcome != "short" or w.account.balance < bits
        elif w.log:
            w.record(w.log[int(s[1]) % len(w.log)])  # type: ignore[call-overload]
        check(w)
    return w


def check(w: World) -> None:
    acct = w.account
    bought = sum(PACKS[ORDERS.index(o)] for o in w.paid)
    reversed_ = sum(PACKS[ORDERS.index(o)] for o in w.paid & w.reversed)
    spent = sum(w.cheers.values())
    assert acct.balance >= 0 and acct.owed >= 0
    assert acct.balance - acct.owed == bought - spent - reversed_
    assert (acct.bought, acct.spent, acct.reversed) == (bought, spent, reversed_)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60))
def test_balances_never_negative_and_add_up(steps: list[tuple[object, ...]]) -> None:
    run(steps)


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=60), st.randoms(use_true_random=False))
def test_replaying_the_log_in_any_order_gives_the_same_account(steps: list[tuple[object, ...]],
                                                              rnd: object) -> None:
    w = run(steps)
    replayed = Account()
    for e in w.log:
        replayed = apply_ledger(e, replayed)
    assert replayed == w.account
    shuffled = list(w.log)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    again = Account()
    for e in shuffled:
        again = apply_ledger(e, again)
    assert (again.bought, again.spent, again.reversed, again.seen) == (
        w.account.bought, w.account.spent, w.account.reversed, w.account.seen)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 300), max_size=50), st.integers(0, 2_000))
def test_concurrent_holds_never_overdraw(cheers: list[int], bought: int) -> None:
    acct = apply_ledger(BitsPurchased(occurred_at=0, user_id=USER, order_id=ORDERS[0], bits=bought,
                                      amount_minor=1, currency="USD", provider="sandbox"), None)
    holds: dict[str, int] = {}
    for i, bits in enumerate(cheers):
        cheer = cheer_id(USER, CHANNEL, str(i))
        if admit_cheer(acct, holds, cheer, bits).outcome == "held":
            holds[cheer] = bits
        assert sum(holds.values()) <= bought


def test_a_reversal_before_its_payment_waits_for_it() -> None:
    order = ORDERS[0]
    state, caused = apply_payment(PaymentReversed(occurred_at=1, order_id=order, provider="stripe",
                                                  provider_event_id="evt_r", kind="CHARGEBACK", amount_minor=140,
                                                  currency="USD"), None)
    assert caused == []
    state, caused = apply_payment(PaymentSucceeded(occurred_at=2, order_id=order, provider="stripe",
                                                   provider_event_id="evt_p", kind="BITS", user_id=USER, bits=100,
                                                   amount_minor=140, currency="USD"), state)
    assert [type(e) for e in caused] == [BitsPurchased, BitsChargedBack]
    again, more = apply_payment(PaymentReversed(occurred_at=3, order_id=order, provider="stripe",
                                                provider_event_id="evt_r2", kind="REFUND", amount_minor=140,
                                                currency="USD"), state)
    assert more == [] and again == state
    assert not any(isinstance(e, BitsRefunded) for e in caused)


def test_leaderboard_buckets_are_utc_days_iso_weeks_and_months() -> None:
    from views.ledger_store import buckets

    # 2026-01-01 00:30 UTC is a Thursday of ISO week 1 of 2026; 2027-01-01 belongs to ISO week 53 of 2026.
    assert buckets(1_767_227_400_000) == {"day": "d:20260101", "week": "w:202601", "month": "m:202601", "all": "all"}
    assert buckets(1_798_761_600_000)["week"] == "w:202653"
