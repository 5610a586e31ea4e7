"""Request validation: pure checks that name the field and say what is wrong.

Limits follow Twitch's where it has them (names of 4-25 letters, digits and
underscores; titles up to 140 characters; up to 10 tags of 25 characters).

Every parser here is total: whatever the bytes, it returns a value or raises
one of ``gateways.errors`` (a 4xx with a reason), never anything else.

- A JSON body (``parse_object``) is UTF-8 (RFC 8259 section 8.1), nests at
  most ``MAX_JSON_DEPTH`` arrays and objects (measured before ``json.loads``,
  whose C scanner recurses per level and raises ``RecursionError`` near
  Python's recursion limit; RFC 8259 section 9 lets a parser set this limit),
  has no NaN or Infinity (not JSON, and a response holding one cannot be
  rendered) and no unpaired surrogate escape (a string that cannot be
  encoded as UTF-8 again; RFC 8259 section 8.2).
- Integers in paths and query strings are ASCII digits (``str.isdigit``
  also takes '\u00b2' and Arabic-Indic digits, which ``int`` then refuses or reads) of
  bounded length, so ``int`` never meets a 5,000-digit string.
- Text that people read (titles, categories, reasons) has no control
  characters and no bidi embedding, override or isolate characters
  (Unicode UAX #9, section 2: U+202A-U+202E, U+2066-U+2069), which can make a
  title display as something else than what was stored.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gateways.errors import ApiError, BadRequest, ValidationFailed

NAME_RE = re.compile(r"^[A-Za-z0-9_]{4,25}$")
TAG_RE = re.compile(r"^[\w-]{1,25}$", re.UNICODE)
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_PASSWORD_LENGTH = 1024
MAX_TITLE_LENGTH = 140
MAX_CATEGORY_LENGTH = 64
MAX_TAGS = 10
# Request bodies here are objects of scalars and lists of strings (depth 2); 32 leaves room and bounds the parse.
MAX_JSON_DEPTH = 32
# C0 and C1 controls, DEL, and the bidi embeddings/overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
UNSAFE_TEXT_RE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the byte it escapes
_STRING = re.compile(rb'"[^"]*"')  # once escapes are gone, every quote opens or closes a string
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _NotJson(ValueError):
    """A token json.loads takes that JSON does not have (NaN, Infinity)."""


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


# One decoder, made once: json.loads with any option builds a new decoder per call (heartbeats are hot).
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def nesting_pattern(limit: int) -> re.Pattern[bytes]:
    """Brackets that pair up, nested at most ``limit`` deep: for a fixed limit a regular language.

    Possessive repeats (``*+``) never backtrack, so a match or a refusal is
    one pass over the bytes, however deep the input goes (the engine stops at
    the first bracket past the limit).  A ``[`` may pair with a ``}`` here;
    the JSON parser refuses that afterwards, at a depth already bounded.
    """
    pattern = b""
    for _ in range(limit):
        pattern = rb"(?:[\[{]" + pattern + rb"[\]}])*+"
    return re.compile(pattern)


_NESTING = nesting_pattern(MAX_JSON_DEPTH)


def too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON text nests arrays and objects deeper than ``limit`` (or its brackets do not pair up).

    No recursion and no Python loop per byte: the brackets outside strings
    are kept (C-speed passes) and matched against ``nesting_pattern``.
    """
    if body.count(b"[") + body.count(b"{") <= limit:  # the usual body: cannot be deeper than its brackets
        return False
    skeleton = _STRING.sub(b"", _ESCAPE.sub(b"", body)).translate(None, _NOT_BRACKETS)
    pattern = _NESTING if limit == MAX_JSON_DEPTH else nesting_pattern(limit)
    return pattern.fullmatch(skeleton) is None


def _lone_surrogate(value: Any) -> bool:
    """Whether any string (key or value) in a parsed JSON value holds an unpaired surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def parse_object(body: bytes) -> dict[str, Any]:
    """A JSON object from a request body; ``BadRequest`` with the reason for anything else."""
    if not body.strip():
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not UTF-8 (byte {exc.start}); JSON is UTF-8 (RFC 8259 8.1)") from None
    if too_deep(body):
        raise BadRequest(f"request body nests arrays and objects more than {MAX_JSON_DEPTH} deep "
                         "(or its brackets do not pair up)")
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except _NotJson as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except (ValueError, RecursionError):  # int() past its 4,300-digit limit; recursion is bounded above
        raise BadRequest("request body is not valid JSON: a number is too long") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _lone_surrogate(data):
        raise BadRequest("request body has an unpaired surrogate escape (\\ud800-\\udfff) in a string")
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def ascii_int(raw: str, max_value: int) -> int | None:
    """``raw`` as a whole number from 0 to ``max_value`` when it is only ASCII digits, else None."""
    if not raw or len(raw) > len(str(max_value)) or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= max_value else None


def query_int(raw: str | None, name: str, low: int, high: int, default: int,
              error: type[ApiError] = BadRequest) -> int:
    """A query parameter's whole number from ``low`` to ``high`` (``default`` when absent or empty)."""
    if raw is None or raw == "":
        return default
    value = ascii_int(raw, high)
    if value is None or value < low:
        raise error(f"'{name}' must be a whole number from {low} to {high} in ASCII digits", field=name)
    return value


def unsafe_text(value: str) -> str | None:
    """The first character of ``value`` that text shown to people must not hold, described; or None."""
    found = UNSAFE_TEXT_RE.search(value)
    return None if found is None else f"U+{ord(found.group()):04X} at position {found.start()}"


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


def text(data: dict[str, Any], name: str, required: bool = True, max_length: int = 1024) -> str | None:
    """A string shown to people: no control, bidi override or isolate characters (see the module docstring)."""
    value = string(data, name, required, max_length)
    bad = None if value is None else unsafe_text(value)
    if bad is not None:
        raise ValidationFailed(f"'{name}' holds a control or bidi formatting character ({bad})", field=name)
    return value


def name(data: dict[str, Any], field: str) -> str:
    value = string(data, field)
    assert value is not None
    if not NAME_RE.match(value):
        raise ValidationFailed(f"'{field}' must be 4-25 letters, digits or underscores", field=field)
    return value


def password(data: dict[str, Any], min_length: int, field: str = "password") -> str:
    value = string(data, field, max_length=MAX_PASSWORD_LENGTH)
    assert value is not None
    if len(value) < min_length:
        raise ValidationFailed(f"'{field}' must be at least {min_length} characters", field=field)
    return value


def email(data: dict[str, Any]) -> str | None:
    value = text(data, "email", required=False, max_length=254)
    if value is not None and not EMAIL_RE.match(value):
        raise ValidationFailed("'email' is not an email address", field="email")
    return value


def title(data: dict[str, Any], required: bool = False) -> str | None:
    value = text(data, "title", required=required, max_length=MAX_TITLE_LENGTH)
    return value.strip() if value is not None else None


def category(data: dict[str, Any]) -> str | None:
    value = text(data, "category", required=False, max_length=MAX_CATEGORY_LENGTH)
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
