"""The user view: one account by id, looked up by name for login and profiles.

It holds no password hash: those live in the gateway's credential store
(gateways/passwords_store.py), out of Valkey and its AOF.  An account
registered before that has its hash in its UserRegistered event; the view
keeps it as ``legacy_password_hash`` so its first login can move it to the
store.  New events carry none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from schemas.record import Record
from schemas.records.user import ProfileUpdated, UserRegistered
from views.fold import Applied, Fold, is_redelivery


@dataclass(frozen=True)
class UserView:
    id: str
    username: str
    email: str | None
    created_at_ms: int
    seq: int
    display_name: str | None = None
    bio: str | None = None
    avatar_url: str | None = None
    legacy_password_hash: str | None = None  # only for accounts registered before the credential store

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if data["legacy_password_hash"] is None:
            del data["legacy_password_hash"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserView:
        data = dict(data)
        legacy = data.pop("password_hash", None)  # a view written before the credential store
        if legacy:
            data.setdefault("legacy_password_hash", legacy)
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """What the API shows about a user (never the password hash)."""
        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "bio": self.bio, "avatar_url": self.avatar_url}


def apply_user_registered(event: Applied[UserRegistered], view: UserView | None) -> UserView | None:
    if view is not None:
        return view  # registered once; a redelivery or a replayed duplicate changes nothing
    v = event.value
    return UserView(id=v.user_id, username=v.username, email=v.email, created_at_ms=v.occurred_at,
                    seq=event.offset, legacy_password_hash=v.password_hash or None)


def apply_profile_updated(event: Applied[ProfileUpdated], view: UserView | None) -> UserView | None:
    if view is None or is_redelivery(event, view.seq):
        return view
    v = event.value
    # A null field leaves the profile's value as it was.
    changes: dict[str, Any] = {name: value for name, value in (("display_name", v.display_name), ("bio", v.bio),
                                               ("avatar_url", v.avatar_url)) if value is not None}
    return replace(view, seq=event.offset, **changes)


USER_FOLDS: dict[type[Record], Fold] = {
    UserRegistered: apply_user_registered,
    ProfileUpdated: apply_profile_updated,
}
