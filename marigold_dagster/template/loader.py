"""Loading templates: YAML file -> validated `Template` -> analysed `Frame`, or every problem.

Each problem is reported with the file, the line and the field, and says what would be valid.
Templates loaded together (a folder) have their triggers checked against each other too.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from grammar_ops import Catalog, Finding, standard_catalog
from grammar_ops.composition import model_in
from marigold_dagster.errors import (
    MarigoldError,
    TemplateError,
    TemplatesInvalid,
    YamlLimitError,
    YamlSyntaxError,
)
from marigold_dagster.template.frame import Frame, analyse_frame
from marigold_dagster.template.model import (
    NAME_PATTERN,
    STEP_KIND_ERROR,
    STEP_TYPES,
    StepKind,
    TaskStep,
    Template,
)
from marigold_dagster.template.trigger_checks import check_triggers
from marigold_dagster.template.yaml_source import (
    MAX_TEMPLATE_BYTES,
    YamlSource,
    check_size,
    parse_yaml,
)

TEMPLATE_SUFFIXES = (".yaml", ".yml")
_TRUE_WORDS = ("yes", "true", "on")


def load_template(path: Path | str, catalog: Catalog | None = None) -> Frame:
    """Load and check one template file.

    Raises:
        TemplateError: with every problem found, each located by line and field.
    """
    path = Path(path)
    try:
        text = _read_text(path)
    except YamlLimitError as error:
        raise TemplateError(path, [Finding("OVER_LIMIT", (), str(error), error.line)]) from None
    except YamlSyntaxError as error:
        raise TemplateError(path, [Finding("YAML_SYNTAX", (), str(error), error.line)]) from None
    except OSError as error:
        raise TemplateError(path, [Finding("UNREADABLE", (), str(error))]) from None
    return load_template_text(text, path, catalog)


def load_template_text(
    text: str,
    path: Path | str,
    catalog: Catalog | None = None,
    among: Sequence[Frame] | None = None,
) -> Frame:
    """Check template YAML `text` as if it were the file at `path` (which need not exist).

    `path` names the file in every problem, must have the template's name as its stem, and
    anchors relative input paths, exactly as for `load_template`. With `among` (the other
    templates of its folder), its triggers are checked as loading the folder would.

    Raises:
        TemplateError: with every problem found, each located by line and field.
    """
    path = Path(path)
    try:
        frame = _check_text(text, path, catalog or standard_catalog())
    except RecursionError:
        # A backstop: parsing bounds nesting, so no template should get here; if one does, it
        # is one bad template, not a code location that fails to load.
        message = "the template nests too deeply to be checked; flatten it"
        raise TemplateError(path, [Finding("OVER_LIMIT", (), message)]) from None
    if among is not None:
        others = [other for other in among if other.name != frame.name]
        for error in check_triggers([*others, frame]):
            if error.path == path:
                raise error
    return frame


def _check_text(text: str, path: Path, catalog: Catalog) -> Frame:
    try:
        source = parse_yaml(text)
    except YamlLimitError as error:
        raise TemplateError(path, [Finding("OVER_LIMIT", (), str(error), error.line)]) from None
    except YamlSyntaxError as error:
        raise TemplateError(path, [Finding("YAML_SYNTAX", (), str(error), error.line)]) from None

    if not isinstance(source.data, dict):
        raise TemplateError(
            path,
            [
                Finding(
                    "NOT_A_MAPPING",
                    (),
                    "a template is a YAML mapping with name, version, budget and steps",
                    1,
                )
            ],
        )
    if source.boolean_keys:
        raise TemplateError(
            path,
            [
                Finding(
                    "YAML_BOOLEAN_KEY",
                    where,
                    f"YAML 1.1 reads the key `{key}` as the boolean "
                    f"{str(key.lower() in _TRUE_WORDS).lower()}, not the word: quote it "
                    f"('{key}': ...)",
                    source.line_of(where),
                )
                for where, key in source.boolean_keys
            ],
        )
    try:
        template = Template.model_validate(source.data)
    except ValidationError as error:
        raise TemplateError(path, _pydantic_problems(error, source)) from None

    frame, findings = analyse_frame(template, source, path, catalog)
    if frame is None:
        raise TemplateError(path, findings)
    return frame


def _read_text(path: Path) -> str:
    """The file's text, reading no more than one byte past `MAX_TEMPLATE_BYTES`.

    Raises:
        YamlLimitError: the file is over the size cap.
        YamlSyntaxError: the file is not UTF-8 (located at the first bad byte's line).
    """
    with path.open("rb") as handle:
        raw = handle.read(MAX_TEMPLATE_BYTES + 1)
    if len(raw) > MAX_TEMPLATE_BYTES:
        check_size(max(path.stat().st_size, len(raw)))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise YamlSyntaxError(
            f"not UTF-8 text: byte {raw[error.start]:#04x} at offset {error.start} cannot be "
            "decoded; save the template as UTF-8",
            line,
        ) from None


def load_templates(directory: Path | str, catalog: Catalog | None = None) -> list[Frame]:
    """Load every template in `directory` (sorted by file name), triggers checked.

    Raises:
        TemplatesInvalid: listing every problem of every bad file.
    """
    frames, errors = load_templates_apart(directory, catalog)
    if errors:
        raise TemplatesInvalid(errors)
    return frames


def load_templates_apart(
    directory: Path | str, catalog: Catalog | None = None
) -> tuple[list[Frame], list[TemplateError]]:
    """Every template in `directory` that loads, and the errors of those that do not.

    For commands about one template (`marigold run X`), which need not refuse because another
    file in the folder is broken. A template loads when its triggers check out against the
    others that load (following one that does not is left to that one's own errors).

    Raises:
        MarigoldError: when the folder does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MarigoldError(f"templates folder {directory} does not exist")
    frames: list[Frame] = []
    errors: list[TemplateError] = []
    for path in sorted(directory.iterdir()):
        if path.suffix not in TEMPLATE_SUFFIXES:
            continue
        try:
            frames.append(load_template(path, catalog))
        except TemplateError as error:
            errors.append(error)
    trigger_errors = check_triggers(frames, unloaded={error.path.stem for error in errors})
    failed = {error.path for error in trigger_errors}
    frames = [frame for frame in frames if frame.path not in failed]
    return frames, sorted([*errors, *trigger_errors], key=lambda error: error.path)


def _pydantic_problems(error: ValidationError, source: YamlSource) -> list[Finding]:
    problems = []
    for item in error.errors():
        loc, kind = _step_tag_removed(tuple(item["loc"]))
        if item["type"] == STEP_KIND_ERROR:
            loc = (*loc, "kind")
        problems.append(
            Finding(
                code=_CODES.get(item["type"], item["type"].upper()),
                path=loc,
                message=_explain(item, loc, kind),
                line=source.line_of(loc),
            )
        )
    return problems


_CODES = {
    "missing": "MISSING_FIELD",
    "extra_forbidden": "UNKNOWN_FIELD",
    "string_pattern_mismatch": "INVALID_NAME",
    "enum": "INVALID_CHOICE",
    STEP_KIND_ERROR: "INVALID_CHOICE",
    "literal_error": "INVALID_CHOICE",
    "value_error": "INVALID_STEP",
    "greater_than": "NOT_POSITIVE",
}


def _step_tag_removed(loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str | None]:
    """`loc` without the step kind pydantic puts after `steps.<i>`, and that kind."""
    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int) and loc[2] in _STEP_TYPE:
        return (*loc[:2], *loc[3:]), str(loc[2])
    return loc, None


def _explain(item: Any, loc: tuple[str | int, ...], step_kind: str | None = None) -> str:
    kind, value = item["type"], item.get("input")
    if kind == STEP_KIND_ERROR:
        return f"{item['msg']}; got '{value.get('kind') if isinstance(value, dict) else value}'"
    if kind == "missing":
        return f"required field `{loc[-1]}` is missing"
    if kind == "extra_forbidden":
        valid = _fields_at(loc[:-1], step_kind)
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
        hint = f"; did you mean `{near[0]}`?" if near else ""
        return f"unknown field `{loc[-1]}`; valid fields here: {', '.join(valid)}{hint}"
    if kind == "string_pattern_mismatch" and item["ctx"]["pattern"] == NAME_PATTERN:
        return (
            f"'{value}' is not a valid name: use only letters, digits and underscores "
            f"(Dagster's rule {NAME_PATTERN})"
        )
    if kind == "value_error":
        return str(item["msg"]).removeprefix("Value error, ")
    if kind in ("enum", "literal_error"):
        return f"{item['msg']}; got '{value}'"
    if kind in ("greater_than", "greater_than_equal", "too_short"):
        return f"{item['msg']}; got {value!r}"
    return str(item["msg"])


def _fields_at(loc: tuple[str | int, ...], step_kind: str | None = None) -> list[str]:
    """The field names of the model found at `loc` inside `Template` (for 'valid fields' hints).

    Under `steps.<i>`, the model is the step type of `step_kind`, its fields in the order the
    template format documents them.
    """
    model: type[BaseModel] = Template
    for position, part in enumerate(loc):
        if isinstance(part, int):
            continue
        if position == 0 and part == "steps":
            model = _STEP_TYPE.get(step_kind or StepKind.TASK.value, TaskStep)
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        inner = model_in(field.annotation)
        if inner is None:
            return []
        model = inner
    names = [field.alias or name for name, field in model.model_fields.items()]
    if model in _STEP_TYPE.values():
        order = {name: index for index, name in enumerate(_STEP_FIELD_ORDER)}
        names.sort(key=lambda name: order.get(name, len(order)))  # a newer field goes last
    return names


_STEP_TYPE: dict[str, type[BaseModel]] = {
    kind.value: step_type for kind, step_type in zip(StepKind, STEP_TYPES, strict=True)
}
_STEP_FIELD_ORDER = [
    "name",
    "kind",
    "description",
    "depends_on",
    "uses",
    "compose",
    "with",
    "branches",
    "batch",
    "planning",
    "gate",
    "retry",
    "timeout_s",
    "pool",
    "tags",
]
