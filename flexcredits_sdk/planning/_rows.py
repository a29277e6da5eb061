"""One history row: its fields checked and turned into a `HistoryRow`, whatever the file format.

Logs repeat values, so the parsers remember: the last timestamp and the day it falls in (a
timestamp on the same day costs a few string operations, not a full parse), and each distinct
tag set (rows with the same tags share one dict). What they remember is bounded.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["HistoryRow"]

_UTC = _dt.UTC
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f", ""})
#: The flags written exactly as in `_TRUE` and `_FALSE` (others are stripped and lowered).
_FLAGS = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}
#: The seconds of a timestamp as written, ``"00"`` to ``"59"`` (ASCII digits only).
_SECONDS = {f"{second:02d}": second for second in range(60)}
#: The minutes since midnight of a time written ``"HH:MM"``, ``"00:00"`` to ``"23:59"``.
_MINUTES = {f"{m // 60:02d}:{m % 60:02d}": m for m in range(24 * 60)}
#: Distinct tag sets remembered before the cache starts afresh (keeps memory bounded).
_MAX_REMEMBERED = 100_000


class HistoryRow(NamedTuple):
    """One action read from a history.

    Attributes:
        line: The row's 1-based line number in its file (0 for rows not read from a file).
        conversation_id: The conversation, or ``None`` (the action is a conversation alone).
        action: The action's name.
        action_type: The action's type (the name when the row gives no type).
        environment: Where it ran; ``"production"`` when the row does not say.
        tags: Tag keys and values (shared between rows: do not change it).
        units: Billable actions the row stands for (1 unless the row says).
        resolved: Whether the row marks its conversation resolved.
        time_s: When the action started, in Unix seconds.
        day: The UTC day it started, ``"YYYY-MM-DD"``.
    """

    line: int
    conversation_id: str | None
    action: str
    action_type: str
    environment: str
    tags: Mapping[str, str]
    units: int
    resolved: bool
    time_s: int
    day: str


_new_row = tuple.__new__
_NOTHING = object()


class _Bad(Exception):
    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.args = (field, value, reason)


class _Times:
    """Parses ISO 8601 timestamps, remembering the last one and the day it falls in.

    A timestamp that differs from the remembered day's only in its time of day (written
    ``HH:MM:SS`` at characters 11 to 18, after the same date and before the same zone) is that
    day's local midnight plus the time, and its UTC day is known unless it crosses into another:
    `datetime.fromisoformat` would say the same, at a fraction of the cost. The minute of the
    last such timestamp is remembered too (`_Reader.row` reads a timestamp in it with one lookup).
    """

    __slots__ = (
        "day",
        "day_start_s",
        "last",
        "midnight_s",
        "minute",
        "minute_s",
        "parsed",
        "prefix",
        "suffix",
        "width",
    )

    def __init__(self) -> None:
        self.last: object = _NOTHING  # equal to no value
        self.parsed = (0, "")
        self.prefix = "\0"  # the remembered date and separator: none yet
        self.suffix = ""  # what follows the seconds: the zone
        self.width = -1
        self.midnight_s = 0  # Unix seconds at the remembered date's local midnight
        self.day = ""  # a UTC day, and its first second
        self.day_start_s = 0
        self.minute = "\0"  # the last minute read, ``YYYY-MM-DDTHH:MM:``: none yet
        self.minute_s = 0  # Unix seconds at its start (a whole minute inside `day`)

    def __call__(self, value: Any) -> tuple[int, str]:
        if value == self.last:
            return self.parsed
        if (
            type(value) is str
            and len(value) == self.width
            and value.startswith(self.prefix)
            and value.endswith(self.suffix)
            and value[16] == ":"
        ):
            minutes = _MINUTES.get(value[11:16])
            second = _SECONDS.get(value[17:19])
            if minutes is not None and second is not None:
                seconds = self.midnight_s + minutes * 60 + second
                if 0 <= seconds - self.day_start_s < 86_400:
                    if (seconds - second - self.day_start_s) % 60 == 0:
                        self.minute = value[:17]  # the same minute, later: one lookup
                        self.minute_s = seconds - second
                    self.last = value
                    self.parsed = (seconds, self.day)
                    return self.parsed
        if not isinstance(value, str):
            raise _Bad("timestamp", value, "must be an ISO 8601 string with a timezone")
        if not value:
            raise _Bad("timestamp", value, "is required")
        try:
            when = _dt.datetime.fromisoformat(value)
        except ValueError:
            raise _Bad("timestamp", value, "is not an ISO 8601 date and time") from None
        offset = when.utcoffset()
        if offset is None:
            raise _Bad("timestamp", value, "must include a timezone, e.g. 'Z' or '+02:00'")
        seconds = int(when.timestamp())
        day = when.astimezone(_UTC).strftime("%Y-%m-%d") if offset else value[:10]
        self.last = value
        self.parsed = (seconds, day)
        self._remember_day(value, when, seconds, day)
        return self.parsed

    def _remember_day(self, value: str, when: _dt.datetime, seconds: int, day: str) -> None:
        """Remember `value`'s date when its time of day is plainly ``HH:MM:SS`` at 11 to 18."""
        if (
            len(value) >= 19
            and value[4] == "-"
            and value[7] == "-"
            and value[16] == ":"
            and _MINUTES.get(value[11:16]) == when.hour * 60 + when.minute
            and _SECONDS.get(value[17:19]) == when.second
            and when.microsecond == 0
        ):
            self.prefix = value[:11]
            self.suffix = value[19:]
            self.width = len(value)
            self.midnight_s = seconds - (when.hour * 3600 + when.minute * 60 + when.second)
            self.day = day
            self.day_start_s = seconds - seconds % 86_400
            self.minute = "\0"  # a minute is read with its day and zone


def _from_ns(value: Any) -> tuple[int, str]:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Bad("start_time_ns", value, "must be a non-negative int")
    seconds = value // 1_000_000_000
    return seconds, _dt.datetime.fromtimestamp(seconds, _UTC).strftime("%Y-%m-%d")


def _text(value: Any, field: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise _Bad(field, value, "is required")
        return None
    if not isinstance(value, str):
        raise _Bad(field, value, "must be a string")
    return value


def _resolved(value: Any) -> bool:
    if value is None or value is True or value is False:
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _Bad("resolved", value, "must be true or false")


def _units(value: Any) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _Bad("units", value, "must be a whole number of at least 1")
    return value


class _Tags:
    """Parses tags, remembering each distinct set (rows repeat them; memory stays bounded).

    Tags come as a mapping (JSON) or as ``key=value;key=value`` (CSV). Rows with the same tags
    share one dict.
    """

    __slots__ = ("items", "seen")

    def __init__(self) -> None:
        self.seen: dict[str, Mapping[str, str]] = {"": {}}
        self.items: dict[tuple[tuple[Any, Any], ...], Mapping[str, str]] = {(): {}}

    def __call__(self, value: Any) -> Mapping[str, str]:
        if type(value) is dict:
            try:
                key = tuple(value.items())
                tags = self.items.get(key)
            except TypeError:  # an unhashable value: a list or an object
                raise _Bad("tags", value, "must map strings to strings") from None
            if tags is None:
                if not all(type(k) is str and type(v) is str for k, v in key):
                    raise _Bad("tags", value, "must map strings to strings")
                if len(self.items) > _MAX_REMEMBERED:
                    self.items.clear()
                tags = self.items[key] = value
            return tags
        if isinstance(value, str):
            tags = self.seen.get(value)
            if tags is None:
                if len(self.seen) > _MAX_REMEMBERED:
                    self.seen.clear()
                tags = self.seen[value] = self._parse(value)
            return tags
        if value is None:
            return {}
        raise _Bad("tags", value, "must map strings to strings")

    @staticmethod
    def _parse(text: str) -> Mapping[str, str]:
        tags: dict[str, str] = {}
        for part in text.split(";"):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise _Bad("tags", text, "must read key=value;key=value")
            tags[key.strip()] = value.strip()
        return tags


def _conversation(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(value, "conversation_id", required=False)


class _Reader:
    """Turns the fields of one row into a `HistoryRow` (checks ordered for the common case)."""

    __slots__ = ("tag_items", "tag_texts", "tags", "times")

    def __init__(self) -> None:
        self.times = _Times()
        self.tags = _Tags()
        self.tag_items = self.tags.items  # the same dicts (cleared, never replaced)
        self.tag_texts = self.tags.seen

    def row(self, line: int, data: dict[str, Any]) -> HistoryRow:
        """Return the row of `data`, a row's fields by column name.

        Raises:
            _Bad: A field is wrong.
        """
        get = data.get
        conversation = get("conversation_id")
        if type(conversation) is not str or not conversation:
            conversation = _conversation(conversation)
        action = get("action")
        if type(action) is not str or not action:
            action = _text(action, "action", required=False)
        action_type = get("action_type")
        if type(action_type) is not str or not action_type:
            action_type = _text(action_type, "action_type", required=action is None)
        if action is None:
            action = action_type
        elif action_type is None:
            action_type = action
        stamp = get("timestamp")
        times = self.times
        if stamp == times.last:
            time_s, day = times.parsed
        elif (
            type(stamp) is str
            and stamp[:17] == times.minute
            and stamp[19:] == times.suffix
            and (second := _SECONDS.get(stamp[17:19])) is not None
        ):  # the minute of the last timestamp read, with the same zone
            time_s = times.minute_s + second
            day = times.day
        elif stamp is not None:
            time_s, day = times(stamp)
        else:
            time_s, day = self._started(data)
        environment = get("environment")
        if type(environment) is not str or not environment:
            environment = _text(environment, "environment", required=False) or "production"
        tags = get("tags")
        if type(tags) is dict:
            try:
                tags = self.tag_items[tuple(tags.items())]
            except (KeyError, TypeError):
                tags = self.tags(tags)
        elif type(tags) is str and tags in self.tag_texts:
            tags = self.tag_texts[tags]
        else:
            tags = self.tags(tags)
        units = get("units")
        resolved = get("resolved")
        if resolved is not True and resolved is not False:
            flag = _FLAGS.get(resolved) if type(resolved) is str else None
            resolved = _resolved(resolved) if flag is None else flag
        return _new_row(  # tuple.__new__: a third of the cost of HistoryRow(...)
            HistoryRow,
            (
                line,
                conversation,
                action,
                action_type,
                environment,
                tags,
                1 if units is None else _units(units),
                resolved,
                time_s,
                day,
            ),
        )

    def _started(self, data: dict[str, Any]) -> tuple[int, str]:
        """Return the time of a row without a ``timestamp``: ``started_at`` or ``start_time_ns``."""
        stamp = data.get("started_at")
        if stamp is None and data.get("start_time_ns") is not None:
            return _from_ns(data.get("start_time_ns"))
        if stamp is None or stamp == "":
            raise _Bad("timestamp", stamp, "is required")
        return self.times(stamp)
