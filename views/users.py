"""The user view: one account by id, looked up by name for login and profiles.

It holds no password hash: those live in the gateway's credential store
(gateways/passwords_store.py), out of Valkey and its AOF.  An account
registered before that has its hash in its UserRegistered event; the view
keeps it as ``legacy_password_hash`` so its first login can move it to the
store.  New events carry none.

The e-mail, display name and bio are kept as the events carry them: sealed
with the user's personal-data key (views/personal_data.py).  Whoever shows
them opens them with that key (``profile_of``); once ``UserDeleted`` erased the
key they open to None, and the view marks the account deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from schemas.record import Record
from schemas.records.user import PasswordChanged, ProfileUpdated, UserDeleted, UserRegistered
from views.fold import Applied, Fold, is_redelivery
from views.personal_data import open_field


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
    deleted: bool = False  # the account was deleted: its personal fields are gone with its key
    credentials_version: int = 0  # password changes so far: a token issued at an older count is refused

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        if data["legacy_password_hash"] is None:
            del data["legacy_password_hash"]
        for optional in ("deleted", "credentials_version"):
            if not data[optional]:
                del data[optional]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserView:
        data = dict(data)
        legacy = data.pop("password_hash", None)  # a view written before the credential store
        if legacy:
            data.setdefault("legacy_password_hash", legacy)
        return cls(**data)



@dataclass(frozen=True)
class Profile:
    """A user's personal fields, opened with their key (None where there is none, or it was erased)."""

    email: str | None
    display_name: str | None
    bio: str | None


def profile_of(user: UserView, key: bytes | None) -> Profile:
    """The user's fields in clear: pure, given the key (views/personal_data.py, ``PersonalKeys.get``)."""
    if user.deleted:
        return Profile(None, None, None)
    return Profile(open_field(key, user.id, "email", user.email),
                   open_field(key, user.id, "display_name", user.display_name),
                   open_field(key, user.id, "bio", user.bio))


def apply_user_registered(event: Applied[UserRegistered], view: UserView | None) -> UserView | None:
    if view is not None:
        return view  # registered once; a redelivery or a replayed duplicate changes nothing
    v = event.value
    return UserView(id=v.user_id, username=v.username, email=v.email, created_at_ms=v.occurred_at,
                    seq=event.offset, legacy_password_hash=v.password_hash or None)


def apply_profile_updated(event: Applied[ProfileUpdated], view: UserView | None) -> UserView | None:
    if view is None or view.deleted or is_redelivery(event, view.seq):
        return view
    v = event.value
    # A null field leaves the profile's value as it was.
    changes: dict[str, Any] = {name: value for name, value in (("display_name", v.display_name), ("bio", v.bio),
                                               ("avatar_url", v.avatar_url)) if value is not None}
    return replace(view, seq=event.offset, **changes)


def apply_password_changed(event: Applied[PasswordChanged], view: UserView | None) -> UserView | None:
    if view is None or view.deleted or is_redelivery(event, view.seq):
        return view
    return replace(view, seq=event.offset, credentials_version=view.credentials_version + 1,
                   legacy_password_hash=None)  # the credential store holds the new hash


def apply_user_deleted(event: Applied[UserDeleted], view: UserView | None) -> UserView | None:
    if view is None or is_redelivery(event, view.seq):
        return view
    # The name stays taken (a deleted account's name is not handed to someone else); nothing personal stays.
    return replace(view, seq=event.offset, email=None, display_name=None, bio=None, avatar_url=None,
                   legacy_password_hash=None, deleted=True)


USER_FOLDS: dict[type[Record], Fold] = {
    UserRegistered: apply_user_registered,
    ProfileUpdated: apply_profile_updated,
    PasswordChanged: apply_password_changed,
    UserDeleted: apply_user_deleted,
}
