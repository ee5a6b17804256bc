"""Cron expressions: the check without Dagster agrees with the one Dagster runs on a schedule."""

from __future__ import annotations

import pytest
from dagster._utils.schedules import is_valid_cron_string
from hypothesis import given, settings
from hypothesis import strategies as st

from marigold_dagster.template.cron import is_valid_cron

EXPRESSIONS = [
    # accepted
    "0 2 * * *",
    "*/5 * * * *",
    "5/10 * * * *",
    "*/90 * * * *",
    "10-5 * * * *",
    "59-0/5 * * * *",
    "1,2,3 * * * *",
    "00 01 * * *",
    "0-0 * * * *",
    "0 0 L * *",
    "0 0 1-L * *",
    "0 0 1,L * *",
    "0 0 L 2 *",
    "0 0 ? * *",
    "0 0 * * ?",
    "0 0 29 2 *",
    "0 0 30,31 2 *",
    "0 0 30 2,3 *",
    "0 0 31-0 4 *",
    "0 0 * JAN-MAR *",
    "0 0 * jan-dec/2 *",
    "0 0 * 12-0 *",
    "0 0 * * 7",
    "0 0 * * 0-7",
    "0 0 * * mon-fri",
    "0 0 * * fri-mon",
    "0 0 * * MON#2",
    "0 0 * * mon-wed#2",
    "0 0 * * 1#2,1#3",
    "0 0 * * 1#2,1",
    "0 0 * * L5",
    # refused
    "60 * * * *",
    "0 24 * * *",
    "1-60 * * * *",
    "*/0 * * * *",
    "-1 * * * *",
    "1,,2 * * * *",
    "1-2-3 * * * *",
    "1/2/3 * * * *",
    "H * * * *",
    "? 0 * * *",
    "0 0 0 * *",
    "0 0 0-5 * *",
    "0 0 32 * *",
    "0 0 L-3 * *",
    "0 0 W * *",
    "0 0 30 2 *",
    "0 0 31 2 *",
    "0 0 *,? * *",
    "0 0 * 0 *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "0 0 * * l",
    "0 0 * * 5L",
    "0 0 * * 1#6",
    "0 0 * * 1-3#2",
    "0 0 * * 1#2,2",
    "0 0 1 1 * *",
]


@pytest.mark.parametrize("cron", EXPRESSIONS)
def test_agrees_with_dagster(cron):
    assert is_valid_cron(cron) == is_valid_cron_string(cron)


VALUES = ["0", "1", "2", "5", "7", "12", "13", "24", "29", "30", "31", "59", "60", "L", "*"]
NAMES = ["jan", "FEB", "dec", "mon", "wed", "sat", "sun", "?", "x"]
ITEM = st.one_of(
    st.sampled_from(VALUES + NAMES),
    st.builds("{}-{}".format, st.sampled_from(VALUES + NAMES), st.sampled_from(VALUES + NAMES)),
    st.builds("{}/{}".format, st.sampled_from(VALUES + NAMES), st.sampled_from(["0", "2", "90"])),
    st.builds("{}#{}".format, st.sampled_from(VALUES + NAMES), st.sampled_from(["0", "1", "6"])),
    st.builds("l{}".format, st.sampled_from(VALUES)),
)
FIELD = st.lists(ITEM, min_size=1, max_size=3).map(",".join)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(FIELD, st.just("*")), min_size=5, max_size=5).map(" ".join))
def test_agrees_with_dagster_on_generated_expressions(cron):
    assert is_valid_cron(cron) == is_valid_cron_string(cron)
