"""Typed reads of values back from Dagster event metadata.

Dagster types a metadata entry's `.value` as a wide union; each key this package records holds
one concrete type, so a reader asks for that type and gets a clear error if the log disagrees.
`values` below is an event's metadata as plain values: `{key: entry.value for ...}`.
"""

from __future__ import annotations

from collections.abc import Mapping


def metadata_int(values: Mapping[str, object], key: str, default: int | None = None) -> int:
    """Entry `key` as an int; `default` when it is absent or None (KeyError without one)."""
    value = _entry(values, key, default)
    if isinstance(value, int):
        return int(value)
    raise _wrong_type(key, value, "an int")


def metadata_float(values: Mapping[str, object], key: str, default: float | None = None) -> float:
    """Entry `key` as a float (an int counts); `default` when it is absent or None."""
    value = _entry(values, key, default)
    if isinstance(value, int | float):
        return float(value)
    raise _wrong_type(key, value, "a number")


def metadata_str(values: Mapping[str, object], key: str) -> str:
    """Entry `key` as a str (KeyError when absent)."""
    value = values[key]
    if isinstance(value, str):
        return value
    raise _wrong_type(key, value, "a string")


def metadata_strs(values: Mapping[str, object], key: str) -> tuple[str, ...]:
    """Entry `key`, a JSON list of strings, as a tuple; empty when it is absent or None."""
    value = values.get(key)
    if value is None:
        return ()
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise _wrong_type(key, value, "a list of strings")


def _entry(values: Mapping[str, object], key: str, default: object) -> object:
    if default is None:
        return values[key]
    value = values.get(key)
    return default if value is None else value


def _wrong_type(key: str, value: object, expected: str) -> TypeError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else f"{shown[:77]}..."
    return TypeError(
        f"metadata entry `{key}` should be {expected}, not {type(value).__name__} {shown}"
    )
