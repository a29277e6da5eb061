"""Tables read from JSON and TOML files (rate cards, pricing models): errors name the file,
the line and the field's path, never the whole text."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from ._exceptions import ConfigurationError, MissingField, RateCardError

__all__ = ["in_file", "load_table", "parse_table", "place"]

_TOML_WHERE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def place(source: str | None, where: str = "") -> str:
    """Return `` (file, line 3, column 1)``, or nothing when neither is known."""
    inside = ", ".join(part for part in (source, where) if part)
    return f" ({inside})" if inside else ""


def parse_table(
    text: str, format: Literal["json", "toml"], source: str | None, field: str
) -> dict[str, Any]:
    """Return the table a JSON or TOML text holds; errors name the file (`source`) and line.

    Raises:
        ConfigurationError: The text does not parse or holds no table (a `RateCardError`
            when `field` is ``"rate_card"``).
    """
    kind = RateCardError if field == "rate_card" else ConfigurationError
    try:
        data = json.loads(text) if format == "json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        message = exc.msg
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_WHERE.search(str(exc))
        message = str(exc)[: found.start()] if found else str(exc)
        where = f"line {found[1]}, column {found[2]}" if found else ""
    else:
        if not isinstance(data, dict):
            raise kind(field, source or data, "must be a JSON object or TOML table" + place(source))
        return data
    reason = f"is not valid {format.upper()}: {message.strip()}{place(source, where)}"
    raise kind(field, source or text[:60], reason) from None


def load_table(path: Path, field: str) -> dict[str, Any]:
    """Return the table a ``.json`` or ``.toml`` file holds.

    Raises:
        ConfigurationError: The suffix is neither, or the file does not parse (naming the file
            and the line).
        OSError: The file cannot be read.
    """
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        kind = RateCardError if field == "rate_card" else ConfigurationError
        raise kind("path", str(path), "must end in .json or .toml")
    text = path.read_text(encoding="utf-8")
    return parse_table(text, "json" if suffix == ".json" else "toml", str(path), field)


def in_file(exc: ConfigurationError, source: str) -> ConfigurationError:
    """Return the same error with the file it came from named at the end."""
    if isinstance(exc, MissingField):
        return type(exc)(exc.field, f"{exc.reason}{place(source)}")
    if exc.reason == "Field required":
        return MissingField(exc.field, f"is required{place(source)}")
    kind = RateCardError if isinstance(exc, RateCardError) else ConfigurationError
    return kind(exc.field, exc.value, f"{exc.reason}{place(source)}")
