"""Cron expressions: whether a schedule trigger's `cron` is one Dagster's schedules accept.

Checked without Dagster (this layer does not import it), to the rules Dagster applies when a
schedule is defined: five fields (minute hour day-of-month month day-of-week), each `*`, `?`
(day fields only), or a comma list of values, ranges (`a-b`, wrapping round when `a > b`) and
steps (`*/s`, `a/s`, `a-b/s`); month and weekday names (`jan`, `mon`); `L` (the last day) in
day-of-month; `d#n` (the n-th weekday `d`) and `Ld` (the last weekday `d`) in day-of-week; and
never only the 30th or 31st of February. A test holds this to Dagster's own check.
"""

from __future__ import annotations

import re

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {name: number for number, name in enumerate(_MONTHS, start=1)},
    {name: number for number, name in enumerate(_WEEKDAYS)},
)
_DAY, _MONTH, _WEEKDAY = 2, 3, 4
_LAST_DAY = 32  # `L` in day-of-month: the last day, whichever that is
_ITEM = re.compile(r"^(?P<low>[^-/]+)(-(?P<high>[^-/]+))?(/(?P<step>\d+))?$")
_NTH = re.compile(r"^(?P<days>\d+|[a-z]+(-[a-z]+)?)#(?P<nth>\d+)$|^l(?P<last>\d+)$")


def is_valid_cron(cron: str) -> bool:
    """Whether Dagster accepts `cron` as a schedule's cron expression."""
    fields = cron.lower().split()
    if len(fields) != 5:
        return False
    values = [_expand(index, field) for index, field in enumerate(fields)]
    if any(value is None for value in values):
        return False
    return not (values[_MONTH] == {2} and values[_DAY] in ({30}, {31}))


def _expand(index: int, field: str) -> set[int] | None:
    """The values `field` (in position `index`) stands for, or None when it is not valid."""
    first, last = _RANGES[index]
    if field == "?":
        return set(range(first, last + 1)) if index in (_DAY, _WEEKDAY) else None
    values: set[int] = set()
    nth_days: set[int] = set()
    for item in field.split(","):
        nth = _NTH.match(item) if index == _WEEKDAY else None
        if nth is not None:
            days = _item(index, nth["days"] or nth["last"])
            if days is None or (nth["nth"] is not None and not 1 <= int(nth["nth"]) <= 5):
                return None
            nth_days |= days
            continue
        expanded = {_LAST_DAY} if index == _DAY and item == "l" else _item(index, item)
        if expanded is None:
            return None
        values |= expanded
    if values - nth_days and nth_days and len(values | nth_days) != last - first + 1:
        return None  # Dagster refuses a weekday both as a plain value and as an n-th weekday
    return values | nth_days


def _item(index: int, item: str) -> set[int] | None:
    """The values of one value, range or step, or None when it is not valid."""
    match = _ITEM.match(item)
    if match is None:
        return None
    first, last = _RANGES[index]
    low_text, high_text, step_text = match["low"], match["high"], match["step"]
    if low_text == "*":
        if high_text is not None:
            return None
        low_text, high_text = str(first), str(last)
    elif high_text is None and step_text is None:
        value = _number(index, low_text)
        return {value} if value is not None and first <= value <= last else None
    if high_text is None or (index == _DAY and high_text == "l"):
        high_text = str(last)
    low, high = _number(index, low_text), _number(index, high_text)
    step = int(step_text or 1)
    if low is None or high is None or max(low, high) > last or step == 0:
        return None
    if low > high:  # wraps round (`fri-mon`), as Dagster counts steps across the end
        values = list(range(low, last + 1, step))
        skip = 0
        if values and values[-1] - first + step > last - first + 1 and last - values[-1] < step:
            skip = step - (last - values[-1])
        values += range(first + skip, high + 1, step)
    elif low == high:
        values = list(range(first, last + 1, step))  # `jan-jan`: the whole cycle
    else:
        values = list(range(low, high + 1, step))
    return set(values) if all(first <= value <= last for value in values) else None


def _number(index: int, text: str) -> int | None:
    number = int(text) if text.isdigit() else _NAMES[index].get(text)
    return 0 if number == 7 and index == _WEEKDAY else number  # 7 is Sunday, as 0 is
