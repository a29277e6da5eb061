"""Conversions between Unix nanoseconds and aware UTC datetimes, defined once."""

from __future__ import annotations

import datetime as _dt

__all__ = ["datetime_to_ns", "ns_to_datetime"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def ns_to_datetime(ns: int) -> _dt.datetime:
    """Return Unix nanoseconds as an aware UTC datetime (microsecond precision)."""
    return _EPOCH + _dt.timedelta(microseconds=ns // 1000)


def datetime_to_ns(value: _dt.datetime) -> int:
    """Return an aware datetime as Unix nanoseconds."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
