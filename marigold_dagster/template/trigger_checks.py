"""Trigger checks: what a template's `triggers:` section needs beyond each field's own rules.

An unknown input, an input a trigger leaves without a path, an invalid cron, an unknown parent
template, a loop of follow-ups: each is a finding located by the line the template was read
with, so nothing reads the file again. Loading a folder runs these checks, so a template with a
bad trigger does not load, like one with any other problem.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from grammar_ops import Finding
from grammar_ops.findings import FindingPath
from marigold_dagster.errors import TemplateError
from marigold_dagster.template.cron import is_valid_cron
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.model import AfterTrigger


def check_triggers(frames: Sequence[Frame], unloaded: Collection[str] = ()) -> list[TemplateError]:
    """Every problem in the templates' triggers, one `TemplateError` per template that has any.

    `unloaded` names the templates of the folder that did not load: a trigger following one of
    them is not checked further (that template's own problems say what to fix).
    """
    frame_of = {frame.name: frame for frame in frames}
    errors = []
    for frame in frames:
        problems = _problems(frame, frame_of, unloaded)
        if problems:
            errors.append(
                TemplateError(frame.path, [frame.located(problem) for problem in problems])
            )
    return errors


def _problems(
    frame: Frame, frame_of: Mapping[str, Frame], unloaded: Collection[str]
) -> list[Finding]:
    triggers = frame.template.triggers
    found: list[Finding] = []
    if triggers.watch is not None:
        watch, where = triggers.watch, ("triggers", "watch")
        if _known_input(frame, watch.input, (*where, "input"), found):
            kind = frame.template.inputs[watch.input].kind
            if kind == "documents":
                found.append(
                    Finding(
                        "INPUT_NOT_A_FILE",
                        (*where, "input"),
                        f"watch launches one run per new file, but input '{watch.input}' is "
                        "kind documents (a folder); watch a table or json input",
                    )
                )
        if watch.input in watch.inputs:
            found.append(
                Finding(
                    "INPUT_GIVEN_TWICE",
                    (*where, "inputs", watch.input),
                    f"input '{watch.input}' is given by each new file; remove it from `inputs`",
                )
            )
        for name in watch.inputs:
            _known_input(frame, name, (*where, "inputs", name), found)
        _all_required(frame, {watch.input, *watch.inputs}, where, "its path in `inputs`", found)
    if triggers.schedule is not None:
        scheduled, where = triggers.schedule, ("triggers", "schedule")
        if not is_valid_cron(scheduled.cron):
            found.append(
                Finding(
                    "INVALID_CRON",
                    (*where, "cron"),
                    f"'{scheduled.cron}' is not a cron expression Dagster accepts: five fields "
                    "(minute hour day-of-month month day-of-week) with valid ranges, "
                    "e.g. '0 2 * * *'",
                )
            )
        for name in scheduled.inputs:
            _known_input(frame, name, (*where, "inputs", name), found)
        _all_required(frame, set(scheduled.inputs), where, "its path in `inputs`", found)
    if triggers.after is not None and triggers.after.template not in unloaded:
        found += _after_problems(frame, triggers.after, frame_of)
    return found


def _after_problems(
    frame: Frame, after: AfterTrigger, frame_of: Mapping[str, Frame]
) -> list[Finding]:
    where: FindingPath = ("triggers", "after")
    found: list[Finding] = []
    parent = frame_of.get(after.template)
    if after.template == frame.name or parent is None:
        others = ", ".join(sorted(set(frame_of) - {frame.name})) or "none"
        why = "a template cannot follow itself" if parent is frame else "no such template here"
        found.append(
            Finding(
                "UNKNOWN_TEMPLATE",
                (*where, "template"),
                f"'{after.template}': {why}; templates it can follow: {others}",
            )
        )
        return found
    loop = _follow_up_loop(frame.name, frame_of)
    if loop:
        found.append(
            Finding(
                "FOLLOW_UP_LOOP",
                (*where, "template"),
                f"follow-ups form a loop ({' -> '.join(loop)}): each finished run would start "
                "the next forever; break it by removing one `after:`",
            )
        )
    parent_inputs = set(parent.template.inputs)
    if after.inputs == "none":
        passed: set[str] = set()
    elif after.inputs == "same":
        passed = parent_inputs & set(frame.template.inputs)
    else:
        passed = set(after.inputs)
        for mine, theirs in after.inputs.items():
            _known_input(frame, mine, (*where, "inputs", mine), found)
            if theirs not in parent_inputs:
                declared = ", ".join(sorted(parent_inputs)) or "none"
                found.append(
                    Finding(
                        "UNKNOWN_INPUT",
                        (*where, "inputs", mine),
                        f"'{after.template}' has no input '{theirs}'; its inputs: {declared}",
                    )
                )
    _all_required(
        frame, passed, where, f"an input of the same name in '{after.template}' or a mapping", found
    )
    return found


def _known_input(frame: Frame, name: str, where: FindingPath, found: list[Finding]) -> bool:
    if name in frame.template.inputs:
        return True
    declared = ", ".join(sorted(frame.template.inputs)) or "none"
    found.append(
        Finding(
            "UNKNOWN_INPUT", where, f"'{frame.name}' has no input '{name}'; declared: {declared}"
        )
    )
    return False


def _all_required(
    frame: Frame, given: set[str], where: FindingPath, hint: str, found: list[Finding]
) -> None:
    for name, spec in frame.template.inputs.items():
        if spec.default is None and name not in given:
            found.append(
                Finding(
                    "MISSING_INPUT",
                    where,
                    f"input '{name}' has no default, so this trigger must give it: {hint}",
                )
            )


def _follow_up_loop(start: str, frame_of: Mapping[str, Frame]) -> list[str]:
    """The loop of `after:` links through `start` (start -> parent -> ... -> start), if any."""
    path, name = [start], start
    while True:
        after = frame_of[name].template.triggers.after if name in frame_of else None
        if after is None:
            return []
        name = after.template
        if name == start:
            return [*path, name]
        if name in path:
            return []  # a loop that `start` only leads into is reported at its own members
        path.append(name)
