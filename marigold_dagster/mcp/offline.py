"""The offline tier: templates and capabilities, read from files and the catalog (no instance).

Each operation calls the function the CLI calls: `load_templates_apart` / `load_template_text`
(as `marigold validate`, triggers checked with the folder), `render_capability_tier` (as
`marigold capabilities`), the catalog's `resolve` / `compose` (as the loader does for a step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from grammar_ops import CompositionError, Kind, render_capability_tier
from marigold_dagster.errors import MarigoldError, TemplateError, YamlSyntaxError
from marigold_dagster.mcp.diagnostics import explain, known_codes
from marigold_dagster.mcp.failures import ToolProblem, template_problems
from marigold_dagster.mcp.models import (
    CapabilityMatch,
    CapabilitySchema,
    CapabilitySearch,
    CodeExplanation,
    CodeList,
    CompositionReport,
    InputInfo,
    Page,
    Problem,
    StepInfo,
    TemplateDescription,
    TemplateInfo,
    TemplateList,
    ValidationReport,
)
from marigold_dagster.mcp.settings import ServerSettings
from marigold_dagster.runs.local_run import template_path
from marigold_dagster.template.frame import Frame
from marigold_dagster.template.loader import (
    TEMPLATE_SUFFIXES,
    load_template,
    load_template_text,
    load_templates_apart,
)
from marigold_dagster.template.mermaid import frame_mermaid
from marigold_dagster.template.model import StepKind
from marigold_dagster.template.yaml_source import parse_yaml


def template_uri(name: str) -> str:
    return f"marigold://templates/{name}.yaml"


def template_files(settings: ServerSettings) -> list[Path]:
    folder = settings.templates_dir
    if not folder.is_dir():
        raise MarigoldError(f"templates folder {folder} does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix in TEMPLATE_SUFFIXES)


def template_names(settings: ServerSettings) -> list[str]:
    return [path.stem for path in template_files(settings)]


def load_frames(settings: ServerSettings) -> tuple[list[Frame], list[TemplateError]]:
    """Every template in the folder that loads, and the errors of those that do not."""
    return load_templates_apart(settings.templates_dir, settings.catalog)


def frame_of(settings: ServerSettings, name: str) -> Frame:
    """The loaded template `name`, or NOT_FOUND naming the templates there."""
    try:
        path = template_path(settings.templates_dir, name)
    except MarigoldError as error:
        raise ToolProblem("NOT_FOUND", str(error), template_names(settings)) from None
    return load_template(path, settings.catalog)


def list_templates(settings: ServerSettings) -> TemplateList:
    frames, errors = load_frames(settings)
    return TemplateList(
        templates=[
            TemplateInfo(
                name=frame.name,
                version=frame.template.version,
                description=frame.template.description.strip(),
                steps=len(frame.steps),
                kinds=sorted({step.kind.value for step in frame}),
                inputs=sorted(frame.template.inputs),
                resource=template_uri(frame.name),
            )
            for frame in frames
        ],
        problems=[p for error in errors for p in template_problems(error)],
    )


def describe_template(settings: ServerSettings, name: str) -> TemplateDescription:
    frame = frame_of(settings, name)
    template = frame.template
    return TemplateDescription(
        name=frame.name,
        version=template.version,
        description=template.description.strip(),
        inputs=[
            InputInfo(
                name=input_name,
                kind=spec.kind,
                description=spec.description,
                default=spec.default,
                columns=_columns(frame.resolve(spec.default)) if spec.default else None,
            )
            for input_name, spec in template.inputs.items()
        ],
        budget=template.budget.model_dump(),
        models=dict(template.models),
        steps=[_step_info(frame, step_name) for step_name in frame.steps],
        mermaid=frame_mermaid(frame),
    )


def _step_info(frame: Frame, name: str) -> StepInfo:
    step = frame.steps[name]
    info: dict[str, Any] = {}
    if step.kind is StepKind.BATCH:
        info["batch"] = step.batch.model_dump()
    elif step.kind is StepKind.PLANNING:
        info["planning"] = step.planning.model_dump(by_alias=True, exclude_none=True)
    elif step.kind is StepKind.GATE:
        info["gate"] = step.gate.model_dump()
    return StepInfo(
        name=step.name,
        kind=step.kind.value,
        description=step.step.description,
        uses=step.composition.source if step.composition is not None else None,
        depends_on=list(step.step.depends_on),
        input_kind=step.input_kind.value,
        output_kind=step.output_kind.value,
        branches=step.branches,
        **info,
    )


def _columns(path: Path) -> list[str] | None:
    """The column names of a CSV or Parquet file, read from its header alone."""
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return list(pq.read_schema(path).names)
        if path.suffix.lower() == ".csv":
            return list(pa_csv.open_csv(path).schema.names)
    except (OSError, ValueError):
        return None
    return None


def validate_template(
    settings: ServerSettings, text: str, file_name: str | None = None
) -> ValidationReport:
    """Check YAML text as if it were `file_name` in the templates folder (nothing is written)."""
    if file_name is None:
        file_name = f"{_declared_name(text) or 'template'}.yaml"
    if Path(file_name).name != file_name or Path(file_name).suffix not in TEMPLATE_SUFFIXES:
        raise ToolProblem(
            "INVALID_ARGUMENT",
            f"file_name must be a bare file name ending in .yaml or .yml; got {file_name!r}",
        )
    path = settings.templates_dir / file_name
    others, _ = load_frames(settings)
    try:
        frame = load_template_text(text, path, settings.catalog, among=others)
    except TemplateError as error:
        return ValidationReport(valid=False, problems=template_problems(error))
    return ValidationReport(valid=True, template=frame.name, steps=len(frame.steps))


def _declared_name(text: str) -> str | None:
    try:
        data = parse_yaml(text).data
    except YamlSyntaxError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name.replace("_", "").isalnum() else None


def search_capabilities(
    settings: ServerSettings, query: str, offset: int = 0, limit: int = 20
) -> CapabilitySearch:
    """Capabilities whose name or one-line summary contains every word of `query`."""
    catalog = settings.catalog
    words = query.lower().split()
    matches = []
    for name in catalog.names():
        item = catalog.primitives.get(name) or catalog.patterns[name]
        haystack = f"{name} {item.summary}".lower()
        if all(word in haystack for word in words):
            matches.append(
                CapabilityMatch(
                    name=name,
                    summary=item.summary,
                    kind="primitive" if name in catalog.primitives else "pattern",
                )
            )
    shown = matches[offset : offset + limit]
    following = offset + limit
    return CapabilitySearch(
        matches=shown,
        page=Page(
            offset=offset,
            limit=limit,
            total=len(matches),
            next_offset=following if following < len(matches) else None,
        ),
    )


def inspect_capabilities(
    settings: ServerSettings, names: list[str] | None, tier: int
) -> CapabilitySchema:
    rendered = render_capability_tier(settings.catalog, tier, names or None)
    return CapabilitySchema(
        tier=rendered.tier,
        names=list(rendered.names),
        text=rendered.text,
        json_schema=rendered.json_schema,
        tokens=rendered.tokens,
        tokenizer=rendered.tokenizer,
    )


def validate_composition(
    settings: ServerSettings,
    uses: str | None,
    config: dict[str, Any] | None,
    compose: list[dict[str, Any]] | None,
    input_kind: str | None,
) -> CompositionReport:
    """Assemble a capability use (`uses` + `with`) or an inline `compose` list, as a step would."""
    if (uses is None) == (compose is None):
        raise ToolProblem("INVALID_ARGUMENT", "give either `uses` (with `with`) or `compose`")
    kind = None
    if input_kind is not None:
        try:
            kind = Kind(input_kind)
        except ValueError:
            raise ToolProblem(
                "INVALID_ARGUMENT",
                f"unknown input kind {input_kind!r}",
                [k.value for k in Kind],
            ) from None
    catalog = settings.catalog
    try:
        if uses is not None:
            composition = catalog.resolve(uses, config or {}, input_kind=kind)
        else:
            composition = catalog.compose(compose or [], input_kind=kind)
    except CompositionError as error:
        return CompositionReport(
            valid=False,
            problems=[
                Problem(code=f.code, field=f.field, message=f.message) for f in error.findings
            ],
        )
    return CompositionReport(
        valid=True,
        source=composition.source,
        input_kind=kind.value if kind else None,
        output_kind=composition.output_kind(kind).value if kind else None,
        side_effect=composition.side_effect,
        handler_type=str(composition.handler_type),
        model_roles=sorted(composition.model_roles),
        spec=composition.spec(),
    )


def explain_codes(codes: list[str] | None) -> CodeList:
    asked = codes or known_codes()
    found: list[CodeExplanation] = []
    unknown = []
    for code in asked:
        explanation = explain(code)
        if explanation is None:
            unknown.append(code)
        else:
            found.append(explanation)
    return CodeList(codes=found, unknown=unknown)
