"""The meter's OpenTelemetry settings and their checks (no OpenTelemetry import here)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, get_args

from ._exceptions import ConfigurationError
from ._validate import MAX_TAG_KEY_LENGTH, MAX_TAGS

__all__ = ["SPAN_MODES", "SpanMode", "check_metric_tags", "check_spans"]

#: How a metered action meets OpenTelemetry tracing:
#:
#: - ``"auto"``: annotate the current recording span; open a child span when there is none
#:   (or when another action already annotated it) and a tracer provider is configured;
#: - ``"always"``: open a child span for every action;
#: - ``"never"``: neither open nor annotate spans (records still carry the current span's ids).
SpanMode = Literal["auto", "always", "never"]
SPAN_MODES: tuple[str, ...] = get_args(SpanMode)


def check_spans(value: Any) -> SpanMode:
    """Return `value` if it is a `SpanMode`.

    Raises:
        ConfigurationError: `value` is not ``"auto"``, ``"always"`` or ``"never"``.
    """
    if not isinstance(value, str) or value not in SPAN_MODES:
        raise ConfigurationError("spans", value, "must be 'auto', 'always' or 'never'")
    return value  # type: ignore[return-value]


def check_metric_tags(value: Any) -> tuple[str, ...]:
    """Return the tag keys allowed on metrics, deduplicated, in the order given.

    Metrics get one time series per distinct set of attribute values, so only the tag keys
    listed here become metric attributes (a cardinality guard); spans carry every tag.

    Raises:
        ConfigurationError: `value` is a string or not iterable, a key is not a non-empty
            string of at most 64 characters, or there are more than 32 keys.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigurationError(
            "metric_tags", value, "must be a collection of tag keys, e.g. ['department']"
        )
    keys: dict[str, None] = {}
    for key in value:
        if not isinstance(key, str) or not key or len(key) > MAX_TAG_KEY_LENGTH:
            raise ConfigurationError(
                "metric_tags key", key, f"must be a string of 1 to {MAX_TAG_KEY_LENGTH} characters"
            )
        keys[key] = None
    if len(keys) > MAX_TAGS:
        raise ConfigurationError("metric_tags", value, f"must name at most {MAX_TAGS} keys")
    return tuple(keys)
