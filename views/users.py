"""The user view: one account by id, looked up by name for login and profiles."""

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
    password_hash: str
    created_at_ms: int
    seq: int
    display_name: str | None = None
    bio: str | None = None
    avatar_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserView:
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """What the API shows about a user (never the password hash)."""
        return {"id": self.id, "username": self.username, "display_name": self.display_name,
                "bio": self.bio, "avatar_url": self.avatar_url}


def apply_user_registered(event: Applied[UserRegistered], view: UserView | None) -> UserView | None:
    if view is not None:
        return view  # registered once; a redelivery or a replayed duplicate changes nothing
    v = event.value
    return UserView(id=v.user_id, username=v.username, email=v.email, password_hash=v.password_hash,
                    created_at_ms=v.occurred_at, seq=event.offset)


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
