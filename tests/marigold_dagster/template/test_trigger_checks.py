"""Trigger checks: run when templates load together, located by the lines they were read with."""

from __future__ import annotations

import pytest

from marigold_dagster.errors import TemplateError, TemplatesInvalid
from marigold_dagster.template.loader import (
    load_template,
    load_template_text,
    load_templates,
    load_templates_apart,
)
from marigold_dagster.template.trigger_checks import check_triggers
from tests.support.trigger_templates import BUDGET, FOLLOW_UP, INTAKE, REVIEW

BAD_WATCH = INTAKE.replace("watch: {input: contracts,", "watch: {input: contract,")


def problems_of(error: TemplatesInvalid) -> str:
    return "\n".join(str(e) for e in error.errors)


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        (
            'watch: {input: contract, folder: in, pattern: "*.csv"}',
            "triggers.watch.input: 'bad' has no input 'contract'; declared: contracts, rules "
            "[UNKNOWN_INPUT]",
        ),
        (
            "watch: {input: rules, folder: in}",
            "triggers.watch: input 'contracts' has no default, so this trigger must give it: "
            "its path in `inputs` [MISSING_INPUT]",
        ),
        (
            'schedule: {cron: "0 2 30 2 *", inputs: {contracts: c.csv}}',
            "triggers.schedule.cron: '0 2 30 2 *' is not a cron expression Dagster accepts",
        ),
        (
            "after: {template: nowhere}",
            "triggers.after.template: 'nowhere': no such template here; templates it can "
            "follow: other [UNKNOWN_TEMPLATE]",
        ),
        (
            "after: {template: bad}",
            "triggers.after.template: 'bad': a template cannot follow itself; templates it "
            "can follow: other [UNKNOWN_TEMPLATE]",
        ),
        (
            "after: {template: other, inputs: {contracts: papers}}",
            "triggers.after.inputs.contracts: 'other' has no input 'papers'; its inputs: "
            "contracts [UNKNOWN_INPUT]",
        ),
    ],
)
def test_trigger_problems_fail_loading_with_file_line_and_field(
    write_template, catalog, triggers, expected
):
    write_template("other", REVIEW.replace("name: review", "name: other"))
    text = INTAKE.replace("name: intake", "name: bad").replace(
        '  watch: {input: contracts, folder: incoming, pattern: "*.csv", settle_s: 0}',
        f"  {triggers}",
    )
    path = write_template("bad", text)
    with pytest.raises(TemplatesInvalid) as raised:
        load_templates(path.parent, catalog)
    message = problems_of(raised.value)
    assert f"{path}:8: {expected}" in message


def test_follow_ups_in_a_loop_are_refused(write_template, catalog):
    write_template(
        "review", REVIEW.replace(BUDGET, f"{BUDGET}\ntriggers: {{after: {{template: follow_up}}}}")
    )
    path = write_template("follow_up", FOLLOW_UP)
    with pytest.raises(TemplatesInvalid) as raised:
        load_templates(path.parent, catalog)
    message = problems_of(raised.value)
    assert "follow-ups form a loop (follow_up -> review -> follow_up)" in message
    assert "follow-ups form a loop (review -> follow_up -> review)" in message


def test_a_bad_trigger_keeps_its_template_out_of_the_loaded_folder(write_template, catalog):
    write_template("review", REVIEW)
    path = write_template("intake", BAD_WATCH)
    frames, errors = load_templates_apart(path.parent, catalog)
    assert [frame.name for frame in frames] == ["review"]
    [error] = errors
    assert error.path == path
    assert [(f.code, f.path, f.line) for f in error.findings] == [
        ("UNKNOWN_INPUT", ("triggers", "watch", "input"), 8),
        ("MISSING_INPUT", ("triggers", "watch"), 8),
    ]


def test_trigger_findings_come_from_the_loaded_lines_not_the_file(write_template, catalog):
    """Once loaded, the file may change or go: the lines are those the template was read with."""
    frame = load_template(write_template("intake", BAD_WATCH), catalog)
    frame.path.write_text("# moved down\n" * 20 + BAD_WATCH)
    [error] = check_triggers([frame])
    assert [f.line for f in error.findings] == [8, 8]
    frame.path.unlink()
    [error] = check_triggers([frame])
    assert [f.line for f in error.findings] == [8, 8]


def test_text_checked_among_its_folder_has_its_triggers_checked(write_template, catalog):
    review = load_template(write_template("review", REVIEW), catalog)
    path = review.path.parent / "follow_up.yaml"
    frame = load_template_text(FOLLOW_UP, path, catalog, among=[review])
    assert frame.template.triggers.after is not None
    with pytest.raises(TemplateError) as raised:
        load_template_text(FOLLOW_UP, path, catalog, among=[])
    assert [(f.code, f.line) for f in raised.value.findings] == [("UNKNOWN_TEMPLATE", 7)]
    assert load_template_text(FOLLOW_UP, path, catalog).name == "follow_up", "alone: unchecked"


def test_following_a_template_that_does_not_load_is_left_to_its_own_errors(write_template, catalog):
    write_template("review", REVIEW.replace("version: 1", "version: one"))
    path = write_template("follow_up", FOLLOW_UP)
    frames, errors = load_templates_apart(path.parent, catalog)
    assert [frame.name for frame in frames] == ["follow_up"]
    assert [error.path.name for error in errors] == ["review.yaml"]
