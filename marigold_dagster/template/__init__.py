"""The template: the YAML a workflow author writes, read and checked before anything runs.

`model` holds the pydantic model of a template (its steps, budgets, triggers), `yaml_source`
parses the text within size and depth limits and maps fields to lines, `frame` analyses the
steps as a graph (order, reachability, what each step receives), and `loader` turns a file into
a checked `Frame` or a `TemplateError` listing every problem with file:line. Nothing here
imports Dagster.
"""

from marigold_dagster.template.frame import Frame, FrameStep, analyse_frame
from marigold_dagster.template.loader import load_template, load_templates
from marigold_dagster.template.model import StepKind, Template

__all__ = [
    "Frame",
    "FrameStep",
    "StepKind",
    "Template",
    "analyse_frame",
    "load_template",
    "load_templates",
]
