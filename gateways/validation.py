"""Request validation: pure checks that name the field and say what is wrong.

Limits follow Twitch's where it has them (names of 4-25 letters, digits and
underscores; titles up to 140 characters; up to 10 tags of 25 characters).
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateways.errors import BadRequest, ValidationFailed

NAME_RE = re.compile(r"^[A-Za-z0-9_]{4,25}$")
TAG_RE = re.compile(r"^[\w-]{1,25}$", re.UNICODE)
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_PASSWORD_LENGTH = 1024
MAX_TITLE_LENGTH = 140
MAX_CATEGORY_LENGTH = 64
MAX_TAGS = 10


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object from a request body."""
    if not body.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def _field(data: dict[str, Any], name: str, required: bool) -> Any:
    if name not in data or data[name] is None:
        if required:
            raise ValidationFailed(f"'{name}' is required", field=name)
        return None
    return data[name]


def string(data: dict[str, Any], name: str, required: bool = True, max_length: int = 1024) -> str | None:
    value = _field(data, name, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(f"'{name}' must be a string", field=name)
    if len(value) > max_length:
        raise ValidationFailed(f"'{name}' is longer than {max_length} characters", field=name)
    return value


def name(data: dict[str, Any], field: str) -> str:
    value = string(data, field)
    assert value is not None
    if not NAME_RE.match(value):
        raise ValidationFailed(f"'{field}' must be 4-25 letters, digits or underscores", field=field)
    return value


def password(data: dict[str, Any], min_length: int) -> str:
    value = string(data, "password", max_length=MAX_PASSWORD_LENGTH)
    assert value is not None
    if len(value) < min_length:
        raise ValidationFailed(f"'password' must be at least {min_length} characters", field="password")
    return value


def email(data: dict[str, Any]) -> str | None:
    value = string(data, "email", required=False, max_length=254)
    if value is not None and not EMAIL_RE.match(value):
        raise ValidationFailed("'email' is not an email address", field="email")
    return value


def title(data: dict[str, Any], required: bool = False) -> str | None:
    value = string(data, "title", required=required, max_length=MAX_TITLE_LENGTH)
    return value.strip() if value is not None else None


def category(data: dict[str, Any]) -> str | None:
    value = string(data, "category", required=False, max_length=MAX_CATEGORY_LENGTH)
    return value.strip() if value is not None else None


def tags(data: dict[str, Any]) -> list[str] | None:
    value = _field(data, "tags", False)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise ValidationFailed("'tags' must be a list of strings", field="tags")
    if len(value) > MAX_TAGS:
        raise ValidationFailed(f"'tags' has more than {MAX_TAGS} entries", field="tags")
    for tag in value:
        if not TAG_RE.match(tag):
            raise ValidationFailed(f"tag {tag!r} must be 1-25 letters, digits, '-' or '_'", field="tags")
    return list(dict.fromkeys(value))  # drop duplicates, keep order


def only(data: dict[str, Any], allowed: set[str]) -> None:
    """Refuse unknown fields so a typo is not silently ignored."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValidationFailed(f"unknown field '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})",
                               field=unknown[0])
