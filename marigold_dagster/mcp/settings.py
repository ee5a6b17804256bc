"""What an MCP server is started with: the project, who it acts as, which tiers it serves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from grammar_ops import Catalog, standard_catalog

TIERS = ("offline", "read", "write")
DEFAULT_TIERS = frozenset({"offline", "read"})


@dataclass(frozen=True)
class ServerSettings:
    """The project the tools work on and the identity write tools act as.

    `project_dir` holds `dagster.yaml` (unless DAGSTER_HOME is set); `templates_dir` and
    `definitions_file` are the same the CLI takes. `identity` is who approves or rejects gates:
    the gate's approver rules apply to it exactly as to `marigold approve --by`.
    """

    templates_dir: Path = Path("templates")
    definitions_file: Path = Path("definitions.py")
    project_dir: Path = Path(".")
    identity: str | None = None
    tiers: frozenset[str] = DEFAULT_TIERS
    catalog: Catalog = field(default_factory=standard_catalog)
    confirm_ttl_s: float = 600.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tiers) - set(TIERS))
        if unknown:
            raise ValueError(f"unknown tier(s) {unknown}; tiers are {', '.join(TIERS)}")


def parse_tiers(text: str | Iterable[str]) -> frozenset[str]:
    """`offline,read` -> the tiers; `all` is every tier.

    Raises:
        ValueError: naming an unknown tier and the valid ones.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    names = {item.strip() for item in items if item.strip()}
    if names == {"all"}:
        return frozenset(TIERS)
    unknown = sorted(names - set(TIERS))
    if unknown or not names:
        raise ValueError(f"unknown tier(s) {unknown or [text]}; choose from {', '.join(TIERS)}")
    return frozenset(names)
