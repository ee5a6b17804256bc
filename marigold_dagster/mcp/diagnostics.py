"""What each diagnostic code means and what fixes it, for agents reading validators' findings.

The codes are the ones the template loader, the frame analysis, the trigger checks, the grammar's
composition checks and the fragment validator emit (a test scans the sources so that every code
they can emit is explained here), plus the MCP tools' own error codes.
"""

from __future__ import annotations

from marigold_dagster.mcp.models import CodeExplanation

TEMPLATE = "template loader"
FRAME = "template frame analysis"
TRIGGERS = "template triggers"
GRAMMAR = "composition (grammar)"
PLAN = "planning fragment validation"
TOOL = "MCP tool"

_CODES: dict[str, tuple[str, str, str]] = {
    # the loader: YAML and fields
    "YAML_SYNTAX": (
        TEMPLATE,
        "The text is not valid YAML (or not UTF-8).",
        "Fix the YAML at the line given.",
    ),
    "OVER_LIMIT": (
        TEMPLATE,
        "The YAML is over a size, depth or alias limit.",
        "Make it smaller; move data into inputs.",
    ),
    "UNREADABLE": (
        TEMPLATE,
        "The template file cannot be read.",
        "Check the path and permissions.",
    ),
    "NOT_A_MAPPING": (
        TEMPLATE,
        "The document is not a mapping.",
        "Start from name, version, budget, steps.",
    ),
    "MISSING_FIELD": (TEMPLATE, "A required field is missing.", "Add the field named in `field`."),
    "UNKNOWN_FIELD": (
        TEMPLATE,
        "A field is not part of the format here.",
        "Use one of the fields the message lists.",
    ),
    "INVALID_NAME": (
        TEMPLATE,
        "A name breaks ^[A-Za-z0-9_]+$.",
        "Use letters, digits and underscores only.",
    ),
    "INVALID_CHOICE": (
        TEMPLATE,
        "A value is not one of the allowed choices.",
        "Use a value the message lists.",
    ),
    "INVALID_STEP": (
        TEMPLATE,
        "A step's sections do not match its kind.",
        "Follow the message: add or move the section.",
    ),
    "NOT_POSITIVE": (
        TEMPLATE,
        "A number that must be positive is not.",
        "Give a value above zero.",
    ),
    # the frame: the template as a whole
    "NAME_NOT_FILE_STEM": (
        FRAME,
        "`name` differs from the file name.",
        "Name the file <name>.yaml.",
    ),
    "DUPLICATE_STEP": (FRAME, "Two steps share a name.", "Rename one."),
    "SELF_DEPENDENCY": (FRAME, "A step depends on itself.", "Remove it from its own depends_on."),
    "UNKNOWN_DEPENDENCY": (
        FRAME,
        "depends_on names no step.",
        "Use a step name the message lists.",
    ),
    "DUPLICATE_DEPENDENCY": (FRAME, "A dependency is listed twice.", "List it once."),
    "CYCLE": (
        FRAME + " / " + PLAN,
        "Steps depend on each other in a loop.",
        "Break the loop the message shows.",
    ),
    "JOIN_NEEDS_ROWS": (
        FRAME,
        "A converge with `combine: join` has an upstream that does not hand on rows.",
        "Use `combine: by_source`, or converge only steps that produce tables.",
    ),
    "BRANCH_NOT_DECLARED": (
        FRAME,
        "A step follows a decision on a branch it does not declare.",
        "Declare the branch in `branches`.",
    ),
    "UNKNOWN_BRANCH": (
        FRAME,
        "A branch names no step.",
        "Name a step that depends on the decision.",
    ),
    "BRANCH_NOT_DOWNSTREAM": (
        FRAME,
        "A branch step does not depend on its decision.",
        "Add the decision to its depends_on.",
    ),
    "DUPLICATE_BRANCH": (FRAME, "A branch is listed twice.", "List it once."),
    "CONVERGE_WITHOUT_UPSTREAM": (
        FRAME,
        "A converge step has nothing to wait for.",
        "Give it depends_on.",
    ),
    "UNRESOLVABLE_CONVERGENCE": (
        FRAME,
        "A converge's upstreams share no decision.",
        "Make them follow one decision.",
    ),
    "NOT_A_DECISION": (
        FRAME,
        "A decision's capability does not produce a Decision.",
        "Use decide.rules or decide.model.",
    ),
    "BATCH_NEEDS_ROWS": (FRAME, "A batch step's input is not rows.", "Feed it a table or records."),
    "BATCH_OUTPUT_NOT_ROWS": (
        FRAME,
        "A batch step's capability does not give rows.",
        "Use a row-to-row capability.",
    ),
    "GATE_INLINE": (
        FRAME,
        "gate.approval used inside a capability.",
        "Declare a `kind: gate` step instead.",
    ),
    "GATE_STEP_TIMEOUT": (
        FRAME,
        "A gate has a step timeout_s.",
        "Use gate.timeout_s to bound the wait.",
    ),
    "GATE_RETRY": (FRAME, "A gate has retry:.", "Remove retry from the gate."),
    "GATE_APPROVER": (FRAME, "An approver is empty or listed twice.", "List each approver once."),
    "UNKNOWN_MODEL_ROLE": (
        FRAME,
        "A planner role is not mapped under models:.",
        "Map the role or use a mapped one.",
    ),
    "UNKNOWN_REFERENCE": (
        FRAME,
        "planning.sees names a step outside depends_on.",
        "See only upstream steps.",
    ),
    # triggers
    "UNKNOWN_TEMPLATE": (
        TRIGGERS,
        "after: names no template.",
        "Use a template name in the folder.",
    ),
    "UNKNOWN_INPUT": (
        TRIGGERS,
        "A trigger names an input that is not declared.",
        "Use a declared input.",
    ),
    "MISSING_INPUT": (
        TRIGGERS,
        "An input without default is not given by the trigger.",
        "Give its path in inputs.",
    ),
    "INPUT_NOT_A_FILE": (
        TRIGGERS,
        "watch: on a documents (folder) input.",
        "Watch a table or json input.",
    ),
    "INPUT_GIVEN_TWICE": (
        TRIGGERS,
        "The watched input is also in inputs.",
        "Remove it from inputs.",
    ),
    "INVALID_CRON": (TRIGGERS, "The schedule is not a 5-field cron.", "Give e.g. '0 2 * * *'."),
    "FOLLOW_UP_LOOP": (TRIGGERS, "after: triggers form a loop.", "Remove one after:."),
    # the grammar
    "UNKNOWN_CAPABILITY": (
        GRAMMAR + " / " + PLAN,
        "No capability has that name.",
        "Use a name from search_capabilities.",
    ),
    "UNKNOWN_PRIMITIVE": (
        GRAMMAR,
        "A compose entry names no primitive.",
        "Use a primitive name (tier 1).",
    ),
    "INVALID_CONFIG": (
        GRAMMAR + " / " + PLAN,
        "`with:` does not match the capability's config schema.",
        "Read its tier 3 schema and fix the field.",
    ),
    "KIND_MISMATCH": (
        GRAMMAR + " / " + PLAN,
        "A step gets a kind of data it does not accept.",
        "Insert a conversion or reorder steps (tier 2 contracts).",
    ),
    "EMPTY_COMPOSITION": (
        GRAMMAR,
        "A composition has no entries.",
        "Give at least one {use, with}.",
    ),
    "MALFORMED_ENTRY": (
        GRAMMAR,
        "A compose entry is not {use, with}.",
        "Write entries as {use: NAME, with: {...}}.",
    ),
    "TOO_MANY_SIDE_EFFECTS": (
        GRAMMAR,
        "More than one side-effecting primitive.",
        "Keep one emit/persist, at the end.",
    ),
    "SIDE_EFFECT_NOT_LAST": (
        GRAMMAR,
        "A side effect is not the last entry.",
        "Move it to the end.",
    ),
    # planning fragments
    "SCHEMA": (
        PLAN,
        "The planner's answer breaks the fragment schema.",
        "Answer {reasoning, steps, done}.",
    ),
    "MODEL_ERROR": (PLAN, "The planner call failed.", "Retry later; check the model server."),
    "INVALID_ID": (PLAN, "A planned step id is not a valid name.", "Use ^[A-Za-z0-9_]+$ ids."),
    "DUPLICATE_ID": (PLAN, "A planned step id is used twice.", "Give each step a unique id."),
    "EMPTY_NOT_DONE": (PLAN, "No steps but done is false.", "Add steps or set done: true."),
    "FRAME_VIOLATION": (
        PLAN,
        "The plan touches the template's frame.",
        "Only add steps inside the segment.",
    ),
    "NOT_ALLOWED": (
        PLAN,
        "The capability exists but the step does not allow it.",
        "Use one from planning.allow.",
    ),
    "COMPOSITION_NOT_ALLOWED": (
        PLAN,
        "Inline composition without allow_dynamic_composition.",
        "Use an allowed capability.",
    ),
    "PINNED_CONFIG": (
        PLAN,
        "The plan changes configuration the template pinned.",
        "Leave pinned fields out.",
    ),
    "DANGLING_REFERENCE": (
        PLAN,
        "depends_on names a result the step cannot see.",
        "Depend on the results listed.",
    ),
    "TOO_MANY_STEPS": (PLAN, "More steps than planning.max_steps.", "Merge or drop steps."),
    "TOO_DEEP": (
        PLAN,
        "A chain longer than planning.max_depth.",
        "Depend on fewer steps in a row.",
    ),
    "OVER_FANOUT": (PLAN, "Too many steps at one depth (max_fanout).", "Chain or merge steps."),
    "TOO_MANY_FINDINGS": (
        PLAN,
        "The answer had more problems than a verdict lists; this counts the rest.",
        "Fix the listed problems first; most of the rest usually share their cause.",
    ),
    "OVER_BUDGET": (
        PLAN,
        "The plan's estimate passes the task's budget.",
        "Plan fewer or cheaper steps.",
    ),
    "TOO_MANY_CHILDREN": (
        PLAN,
        "More planned steps depend directly on one step than planning.max_children.",
        "Chain some of them after another step, or merge them.",
    ),
    "OUTPUT_CONTRACT": (
        PLAN,
        "A terminal step's rows lack a column the planning step's result must have.",
        "End the plan with steps that produce the missing columns.",
    ),
    # the MCP tools' own
    "NOT_FOUND": (
        TOOL,
        "No template, run, step or file by that name.",
        "Use a value from `valid`.",
    ),
    "INVALID_ARGUMENT": (
        TOOL,
        "An argument is not acceptable.",
        "Follow the message; see `valid`.",
    ),
    "TEMPLATE_INVALID": (
        TOOL,
        "The template does not load.",
        "Fix the problems listed (validate_template).",
    ),
    "CONFIRMATION_INVALID": (
        TOOL,
        "confirm_token is unknown, used, expired or for other arguments.",
        "Call without confirm_token for a new preview.",
    ),
    "GATE_DECISION": (
        TOOL,
        "The gate decision cannot be recorded.",
        "See the message: approvers, already decided, not paused.",
    ),
    "GATE_TIMED_OUT": (
        TOOL,
        "The gate's timeout passed; it counts as rejected.",
        "Resume the run to end that branch.",
    ),
    "PLAN_REJECTED": (
        TOOL,
        "The planner produced no valid fragment.",
        "Read the attempts' findings.",
    ),
    "UNKNOWN_CORRELATION_ID": (
        TOOL,
        "No run carries that correlation id.",
        "Use list_runs for task ids.",
    ),
    "INTERNAL_ERROR": (
        TOOL,
        "The tool failed unexpectedly; the server's log has the details.",
        "Retry once; then escalate.",
    ),
    "PLATFORM_ERROR": (
        TOOL,
        "The platform refused the operation.",
        "Read the message; it says what is valid.",
    ),
}


def explain(code: str) -> CodeExplanation | None:
    """What `code` means, who raises it and how to fix it; None for a code nobody emits."""
    entry = _CODES.get(code.strip().upper())
    if entry is None:
        return None
    raised_by, meaning, fix = entry
    return CodeExplanation(code=code.strip().upper(), raised_by=raised_by, meaning=meaning, fix=fix)


def known_codes() -> list[str]:
    return sorted(_CODES)
