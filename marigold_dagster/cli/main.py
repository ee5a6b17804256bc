"""The `marigold` command line: run, validate and inspect templates.

Dagster, pandas and the catalog load when a command needs them, not at start-up, so `marigold
--help` (and a mistyped command) answers at once.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from marigold_dagster.errors import MarigoldError, TemplatesInvalid


class _LazyGroup(click.Group):
    """A group whose commands from other modules are imported when one of them is invoked."""

    lazy: dict[str, tuple[str, str]] = {
        # name: ("module:attribute", one-line help shown by --help)
        "approve": (
            "marigold_dagster.runs.gate_commands:approve",
            "Approve gate STEP of paused run RUN_ID, then resume it.",
        ),
        "reject": (
            "marigold_dagster.runs.gate_commands:reject",
            "Reject gate STEP of paused run RUN_ID, then resume it.",
        ),
        "resume": (
            "marigold_dagster.runs.gate_commands:resume",
            "Re-execute failed run RUN_ID from failure (a gate acts on its recorded decision).",
        ),
        "lineage": (
            "marigold_dagster.records.lineage:lineage_command",
            "Print the chain of tasks CORRELATION_ID belongs to: each run's status, steps and use.",
        ),
        "runs": (
            "marigold_dagster.records.run_history:runs_command",
            "List recent template runs with their status, budget use and task (correlation) id.",
        ),
        "worker": (
            "marigold_dagster.jobs.celery_worker:worker_command",
            "Start a Celery worker on this deployment's queues (dagster-celery worker start).",
        ),
        "mcp": (
            "marigold_dagster.mcp.command:mcp_command",
            "Serve templates, runs and gates to agents over MCP (stdio, or streamable HTTP).",
        ),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][1]))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str()))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


DEFAULT_TEMPLATES = Path("templates")
_templates_dir_option = click.option(
    "--templates-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_TEMPLATES,
    show_default=True,
    help="Folder of template files.",
)


@click.group(cls=_LazyGroup, help="Marigold on Dagster: YAML templates compiled into Dagster jobs.")
def main() -> None:
    pass


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@main.command()
@click.argument("template")
@_templates_dir_option
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=PATH",
    help="A launch input (repeatable); defaults come from the template.",
)
@click.option(
    "--parent-correlation-id",
    default=None,
    help="Chain this task under another task's correlation id.",
)
@click.option(
    "--verbose", is_flag=True, help="Also print Dagster's own log (events, stack traces)."
)
def run(
    template: str,
    templates_dir: Path,
    inputs: tuple[str, ...],
    parent_correlation_id: str | None,
    verbose: bool,
) -> None:
    """Run TEMPLATE's job to completion on the local Dagster instance and summarise it.

    Exit status: 0 the run succeeded, 1 it failed (each failure is named once, in the
    summary), 3 it is paused at a gate waiting for a decision (the command to approve it is
    printed).
    """
    from marigold_dagster.runs.gate_commands import EXIT_PAUSED
    from marigold_dagster.runs.local_run import run_locally

    try:
        outcome = run_locally(
            template,
            templates_dir,
            _inputs(inputs),
            parent_correlation_id=parent_correlation_id,
            log_level="DEBUG" if verbose else "CRITICAL",
        )
    except (MarigoldError, TemplatesInvalid) as error:
        _fail(str(error))
        return
    for broken in outcome.broken_templates:
        click.echo(f"warning: not loaded, so not runnable until fixed: {broken}", err=True)
    click.echo(outcome.summary.render())
    click.echo("\nStep outputs:")
    for step, value in outcome.outputs.items():
        payload = value.payload
        shown = getattr(payload, "path", None) or json.dumps(payload, default=str)[:200]
        click.echo(f"  {step}: {shown}")
    if outcome.outputs:
        last, value = list(outcome.outputs.items())[-1]
        preview = _table_preview(value.payload)
        if preview:
            click.echo(f"\nResult of '{last}':\n{preview}")
    click.echo("")
    click.echo(f"Run files:        {outcome.artifacts}")
    click.echo(f"Correlation id:   {outcome.correlation_id} (marigold lineage <id>)")
    click.echo(f"Dagster instance: {outcome.dagster_home} (DAGSTER_HOME)")
    dagster = Path(sys.executable).with_name("dagster")  # beside this interpreter, in its venv
    click.echo(
        f"See it in the UI: DAGSTER_HOME={outcome.dagster_home} {dagster} dev, "
        f"then Runs -> {outcome.summary.run_id[:8]}"
    )
    if outcome.paused_at:
        run_id = outcome.summary.run_id
        for gate in outcome.paused_at:
            click.echo(
                f"\nPaused at gate '{gate}', waiting for a decision. Approve it with:\n"
                f'  marigold approve {run_id} --step {gate} --by NAME --reason "..."\n'
                f"or reject it with `marigold reject` (same options)."
            )
        sys.exit(EXIT_PAUSED)
    if not outcome.success:
        sys.exit(1)


def _table_preview(payload: object, rows: int = 12) -> str | None:
    """The first rows of a table result, or of the Parquet file a write receipt points at."""
    path = getattr(payload, "path", None)
    if path is None and isinstance(payload, dict):
        path = payload.get("path")
    if not isinstance(path, str) or not path.endswith(".parquet") or not Path(path).is_file():
        return None
    import pandas as pd

    frame = pd.read_parquet(path, dtype_backend="numpy_nullable")  # integers stay integers
    text = frame.head(rows).to_string(index=False, max_colwidth=48)
    more = f"\n... {len(frame) - rows} more rows" if len(frame) > rows else ""
    return f"{text}{more}\n({len(frame)} rows in {path})"


@main.command()
@click.argument("template")
@click.option("--step", "step_name", default=None, help="The planning step (default: the first).")
@_templates_dir_option
@click.option("--input", "inputs", multiple=True, metavar="NAME=PATH", help="A launch input.")
@click.option("--dry-run", is_flag=True, help="Plan only; print the fragment and its estimate.")
def plan(
    template: str,
    step_name: str | None,
    templates_dir: Path,
    inputs: tuple[str, ...],
    dry_run: bool,
) -> None:
    """Plan TEMPLATE's planning step against real inputs, without executing the plan."""
    if not dry_run:
        _fail("only --dry-run is supported: `marigold run` executes plans")
    from marigold_dagster.runs.dry_run import dry_run_planning

    try:
        outcome = dry_run_planning(template, templates_dir, step_name, _inputs(inputs))
    except (MarigoldError, TemplatesInvalid) as error:
        _fail(str(error))
        return
    click.echo(outcome.render())
    if outcome.outcome.fragment is not None:
        accepted = outcome.outcome.attempts[-1].answer
        click.echo("\nfragment:\n" + json.dumps(accepted, indent=2))
    if not outcome.accepted:
        sys.exit(1)


def _inputs(items: tuple[str, ...]) -> dict[str, str]:
    given = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            _fail(f"--input takes NAME=PATH, got '{item}'")
        given[name] = path
    return given


@main.command()
@click.argument("templates_dir", type=click.Path(path_type=Path), default=DEFAULT_TEMPLATES)
def validate(templates_dir: Path) -> None:
    """Check every template in TEMPLATES_DIR; print each problem with file:line and field."""
    from marigold_dagster.template.loader import load_templates

    try:
        frames = load_templates(templates_dir)
    except TemplatesInvalid as error:
        _fail(str(error))
        return
    except MarigoldError as error:
        _fail(str(error))
        return
    if not frames:
        _fail(f"no templates in {templates_dir}: a template is a .yaml file, one per job")
        return
    for frame in frames:
        click.echo(f"ok  {frame.path}  ({len(frame.steps)} steps)")


@main.command()
@click.option(
    "--tier",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="1: names and one-liners; 2: input/output contracts; 3: full config schemas.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON Schema form.")
@click.argument("names", nargs=-1)
def capabilities(tier: int, as_json: bool, names: tuple[str, ...]) -> None:
    """Print the capability schema (for NAMES, or the whole catalog) and its size in tokens."""
    from grammar_ops import standard_catalog
    from grammar_ops.capability_schema import render_capability_tier

    try:
        rendered = render_capability_tier(standard_catalog(), tier, names or None)
    except Exception as error:  # unknown names come back as a CompositionError
        _fail(str(error))
        return
    click.echo(json.dumps(rendered.json_schema, indent=2) if as_json else rendered.text)
    click.echo(
        f"\n# tier {tier}: {len(rendered.names)} capabilities, {rendered.tokens} tokens "
        f"({rendered.tokenizer})",
        err=True,
    )
