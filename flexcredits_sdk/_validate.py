"""Checks of user input, done once at decoration or configuration time.

Each check raises a `ConfigurationError` subclass that names the field and the value.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ._exceptions import ConfigurationError

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_MODELS",
    "MAX_NAME_LENGTH",
    "MAX_TAGS",
    "MAX_TAG_KEY_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "MAX_TOKENS",
    "check_aware",
    "check_credits",
    "check_id",
    "check_name",
    "check_tags",
    "check_text",
    "check_tokens",
    "check_units",
    "not_a_number",
]

#: The longest record id, in characters.
MAX_ID_LENGTH = 64
#: The longest action name, in characters.
MAX_NAME_LENGTH = 200
#: The most tags one record may carry.
MAX_TAGS = 32
#: The longest tag key, in characters.
MAX_TAG_KEY_LENGTH = 64
#: The longest tag value, in characters.
MAX_TAG_VALUE_LENGTH = 256
#: The most models one record's model usage names.
MAX_MODELS = 16
#: The most tokens one record counts for one model, input or output (2**53: exact in JSON).
MAX_TOKENS = 2**53


def check_name(value: Any, field: str = "name") -> str:
    """Return `value` if it is a usable action name."""
    if not isinstance(value, str):
        raise ConfigurationError(field, value, "must be a string")
    if not value.strip():
        raise ConfigurationError(field, value, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise ConfigurationError(field, value, f"must be at most {MAX_NAME_LENGTH} characters")
    if not value.isprintable():
        raise ConfigurationError(field, value, "must not contain control characters")
    return value


def check_tags(
    value: Any, field: str = "tags", *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return a validated copy of the tag mapping `value`.

    Args:
        value: The tags to check.
        field: The name to report in errors.
        base: Tags the new ones are merged over; the merged count must stay within `MAX_TAGS`.
    """
    if not isinstance(value, Mapping):
        raise ConfigurationError(field, value, "must be a mapping of str to str")
    tags: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"{field} key", key, "must be a non-empty string")
        if len(key) > MAX_TAG_KEY_LENGTH:
            raise ConfigurationError(
                f"{field} key", key, f"must be at most {MAX_TAG_KEY_LENGTH} characters"
            )
        if not key.isprintable():
            raise ConfigurationError(f"{field} key", key, "must not contain control characters")
        if not isinstance(val, str):
            raise ConfigurationError(f"{field}[{key!r}]", val, "must be a string")
        if len(val) > MAX_TAG_VALUE_LENGTH:
            raise ConfigurationError(
                f"{field}[{key!r}]", val, f"must be at most {MAX_TAG_VALUE_LENGTH} characters"
            )
        if not val.isascii():
            check_text(val, f"{field}[{key!r}]")
        tags[key] = val
    count = len(tags) if base is None else len(base.keys() | tags.keys())
    if count > MAX_TAGS:
        raise ConfigurationError(field, value, f"would give {count} tags; at most {MAX_TAGS}")
    return tags


def check_text(value: str, field: str) -> str:
    """Return `value` if UTF-8 can encode it: no lone surrogate, such as `os.fsdecode` makes of a
    file name that is not UTF-8 (every store and the wire would refuse the record later)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            field,
            value,
            "must be text UTF-8 can encode; it holds a lone surrogate (decode bytes with "
            "errors='replace')",
        ) from None
    return value


def check_id(value: Any, field: str = "id") -> str:
    """Return `value` if it could be a record's id: a printable string of 1 to 64 characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ConfigurationError(
            field, value, f"must be a string of 1 to {MAX_ID_LENGTH} characters"
        )
    if not value.isprintable():
        raise ConfigurationError(field, value, "must be printable")
    return value


def check_tokens(value: Any, field: str = "tokens") -> int:
    """Return `value` if it is a token count: an int from 0 to `MAX_TOKENS`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(field, value, "must be an int")
    if not 0 <= value <= MAX_TOKENS:
        raise ConfigurationError(field, value, f"must be from 0 to {MAX_TOKENS}")
    return value


def check_units(value: Any, field: str = "units") -> int:
    """Return `value` if it is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(field, value, "must be an int")
    if value <= 0:
        raise ConfigurationError(field, value, "must be at least 1")
    return value


def not_a_number(value: Any) -> str:
    """Say why `value` is not a number of credits (an int or a `decimal.Decimal`)."""
    if isinstance(value, bool):
        return "must be a number, not a boolean"
    if isinstance(value, float):
        return "is a float, and floats are not exact: pass an int or a decimal.Decimal"
    if isinstance(value, str):
        try:
            Decimal(value.strip())
        except ArithmeticError:
            return "is not a decimal number: pass an int or a decimal.Decimal"
        return f"is text: pass an int or a decimal.Decimal, e.g. Decimal({value.strip()!r})"
    if value is None:
        return "is missing: pass an int or a decimal.Decimal"
    return f"is a {type(value).__name__}: pass an int or a decimal.Decimal"


def check_credits(
    value: Any, field: str = "credits", *, allow_zero: bool = True, allow_negative: bool = False
) -> int | Decimal:
    """Return `value` if it is a non-negative int or finite Decimal (never a float)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ConfigurationError(field, value, not_a_number(value))
    if isinstance(value, Decimal) and not value.is_finite():
        raise ConfigurationError(field, value, "must be finite")
    if allow_negative:
        return value
    if value < 0:
        raise ConfigurationError(field, value, "must not be negative")
    if value == 0 and not allow_zero:
        raise ConfigurationError(field, value, "must be positive")
    return value


def check_aware(value: Any, field: str) -> _dt.datetime:
    """Return `value` if it is a timezone-aware datetime."""
    if not isinstance(value, _dt.datetime):
        raise ConfigurationError(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigurationError(
            field, value, "must be timezone-aware (naive datetimes are ambiguous)"
        )
    return value
