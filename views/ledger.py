"""The bits ledger as pure folds: a user's balance, an order's payment state, and what a cheer may spend.

A balance is never a stored number that is changed: it is what the
``billing.ledger`` events of one user add up to (``apply_ledger``), and a
replay of the log gives it again.  Every ledger event is applied at most once
(its ``event_id`` is remembered; the ids are derived from what caused the
event, so a redelivered payment or a retried cheer is the same event).

``net`` is bought minus spent minus reversed.  A refund or chargeback takes
back a whole pack even when its bits were spent, so ``net`` may fall below
zero: the account then owes (``owed``) and its spendable ``balance`` is zero
until new purchases cover the debt; ``balance`` itself is never negative.

A cheer is admitted against the balance minus the holds of cheers that are
logged or being logged but not yet folded (``admit_cheer``; in Valkey the same
rule runs as one Lua script, views/ledger_store.py).

Orders (``billing.payments``, keyed by order id) fold into ``OrderState`` and
say which ledger events they cause (``apply_payment``): a paid bit pack is a
``BitsPurchased``, a donation a ``DonationMade``, a reversal of a paid pack a
``BitsRefunded``/``BitsChargedBack`` once per order, and a reversal that
arrives before its payment waits in the state until the payment comes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from schemas.records.billing import (
    BitsChargedBack,
    BitsCheered,
    BitsPurchased,
    BitsRefunded,
    DonationMade,
    OrderPlaced,
    PaymentReversed,
    PaymentSucceeded,
)

LEDGER_NAMESPACE = uuid.UUID("c3b9f0d2-5e71-4a8c-b4e6-1d2f3a4b5c6d")

LedgerEvent = BitsPurchased | BitsCheered | BitsRefunded | BitsChargedBack | DonationMade
PaymentEvent = OrderPlaced | PaymentSucceeded | PaymentReversed


def derived_id(*parts: str) -> str:
    """An event id derived from what caused the event, so doing it again is the same event."""
    return str(uuid.uuid5(LEDGER_NAMESPACE, ":".join(parts)))


def cheer_id(user_id: str, channel_id: str, nonce: str) -> str:
    """The id of a cheer sent with a client nonce: a retry of the same message is the same cheer."""
    return derived_id("cheer", user_id, channel_id, nonce)


def cheer_event_id(cheer: str) -> str:
    """The event id of a cheer's ``BitsCheered``: one per cheer, however often it is produced."""
    return derived_id("cheered", cheer)


@dataclass(frozen=True)
class Account:
    """One user's ledger, folded."""

    bought: int = 0
    spent: int = 0
    reversed: int = 0
    donated_minor: int = 0
    seen: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def net(self) -> int:
        return self.bought - self.spent - self.reversed

    @property
    def balance(self) -> int:
        """Bits the user may spend: never negative."""
        return max(0, self.net)

    @property
    def owed(self) -> int:
        """Bits a reversal took back beyond the balance."""
        return max(0, -self.net)


def apply_ledger(event: LedgerEvent, account: Account | None) -> Account:
    """The account after one ledger event; an event already applied changes nothing."""
    acct = account or Account()
    if event.event_id in acct.seen:
        return acct
    seen = acct.seen | {event.event_id}
    if isinstance(event, BitsPurchased):
        return replace(acct, bought=acct.bought + event.bits, seen=seen)
    if isinstance(event, BitsCheered):
        return replace(acct, spent=acct.spent + event.bits, seen=seen)
    if isinstance(event, BitsRefunded | BitsChargedBack):
        return replace(acct, reversed=acct.reversed + event.bits, seen=seen)
    return replace(acct, donated_minor=acct.donated_minor + event.amount_minor, seen=seen)


@dataclass(frozen=True)
class Admission:
    """A cheer's fate at the hold: admitted (and held), refused for the balance, or a duplicate."""

    outcome: str  # "held", "short", "duplicate" (charged already), "pending" (held, not yet logged)
    available: int  # bits left to spend after it (admitted) or before it (refused)


def admit_cheer(account: Account, holds: dict[str, int], cheer: str, bits: int) -> Admission:
    """Whether a cheer of ``bits`` may be held: the balance minus other holds must cover it."""
    if cheer_event_id(cheer) in account.seen or cheer in holds:
        return Admission("duplicate", account.net - sum(holds.values()))
    available = account.net - sum(holds.values())
    if available < bits:
        return Admission("short", max(0, available))
    return Admission("held", available - bits)


@dataclass(frozen=True)
class OrderState:
    """What the ledger knows of one order: who, what, and whether it was paid and reversed."""

    order_id: str
    user_id: str | None = None
    bits: int = 0
    kind: str | None = None
    paid: bool = False
    reversal: PaymentReversed | None = None  # the first reversal seen, applied once the payment is known
    reversed: bool = False


def apply_payment(event: PaymentEvent, state: OrderState | None) -> tuple[OrderState, list[LedgerEvent]]:
    """The order after one payment event, and the ledger events it causes (ids derived, so repeatable)."""
    st = state or OrderState(order_id=event.order_id)
    out: list[LedgerEvent] = []
    if isinstance(event, OrderPlaced):
        return st, out
    if isinstance(event, PaymentSucceeded):
        if st.paid or event.renewal:
            return st, out
        st = replace(st, user_id=event.user_id, bits=event.bits or 0, kind=event.kind, paid=True)
        if event.kind == "BITS":
            out.append(BitsPurchased(
                event_id=derived_id("purchase", event.order_id), occurred_at=event.occurred_at,
                user_id=event.user_id, order_id=event.order_id, bits=event.bits or 0,
                amount_minor=event.amount_minor, currency=event.currency, provider=event.provider))
        elif event.kind == "DONATION" and event.channel_id is not None:
            out.append(DonationMade(
                event_id=derived_id("donation", event.order_id), occurred_at=event.occurred_at,
                user_id=event.user_id, order_id=event.order_id, channel_id=event.channel_id,
                amount_minor=event.amount_minor, currency=event.currency, message=event.message))
        if st.reversal is not None:
            st, more = _reverse(st, st.reversal)
            out += more
        return st, out
    if st.reversed or st.reversal is not None:
        return st, out
    st = replace(st, reversal=event)
    return _reverse(st, event) if st.paid else (st, out)


def _reverse(st: OrderState, event: PaymentReversed) -> tuple[OrderState, list[LedgerEvent]]:
    st = replace(st, reversed=True)
    if st.kind != "BITS" or st.user_id is None:
        return st, []
    cls = BitsRefunded if event.kind == "REFUND" else BitsChargedBack
    return st, [cls(event_id=derived_id("reversal", st.order_id), occurred_at=event.occurred_at,
                    user_id=st.user_id, order_id=st.order_id, bits=st.bits,
                    provider_event_id=event.provider_event_id)]
