"""Principals: who decides a gate, as the platform can check it, and whom they may act as.

A gate lists approver names (`approvers: [cfo, alice]`); a name typed on a command line proves
nothing. A decision is therefore made by a *principal* the platform can check:

- `os_user`: the operating-system account running `marigold approve` / `marigold reject`, read
  from the effective uid (`pwd`), not from `$USER`, with the groups the account belongs to;
- `run_tag`: for the Launchpad's decision job, the value of the run tag the deployment names in
  `MARIGOLD_GATE_PRINCIPAL_TAG` (e.g. `dagster/user`, which Dagster+ sets to the signed-in
  user, or a tag an authenticating proxy sets from its user header). Dagster OSS lets any
  launcher set any tag, so name a tag here only when the deployment sets it and strips it from
  what launchers send; without the variable, the decision job refuses to decide.

The approver map (`MARIGOLD_APPROVERS`: the path of a YAML file the deployment owns) says which
principals may act as each approver name:

    cfo: {users: [alice], groups: [finance]}
    legal: {users: [bob@example.com]}

A name the map does not list can be acted as only by a principal of that same name (OS user
`alice` acts as `alice`).
"""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from marigold_dagster.errors import GateDecisionError

APPROVERS_ENV = "MARIGOLD_APPROVERS"
PRINCIPAL_TAG_ENV = "MARIGOLD_GATE_PRINCIPAL_TAG"


@dataclass(frozen=True)
class Principal:
    """Someone the platform has identified: an OS account, or a user the deployment vouches for."""

    kind: Literal["os_user", "run_tag"]
    name: str
    groups: frozenset[str] = frozenset()
    source: str = ""

    def __str__(self) -> str:
        """`os_user:alice (uid 1000)` / `run_tag:alice@example.com (run tag dagster/user)`."""
        return f"{self.kind}:{self.name}" + (f" ({self.source})" if self.source else "")


def os_user_principal() -> Principal:
    """The OS account this process runs as (effective uid), with the groups it belongs to."""
    uid = os.geteuid()
    entry = pwd.getpwuid(uid)
    groups = set()
    for gid in os.getgrouplist(entry.pw_name, entry.pw_gid):
        try:
            groups.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            groups.add(str(gid))
    return Principal("os_user", entry.pw_name, frozenset(groups), f"uid {uid}")


def run_tag_principal(
    tags: Mapping[str, str], environ: Mapping[str, str] | None = None
) -> Principal:
    """The user the deployment's authentication put on a run, as the tag it names.

    Raises:
        GateDecisionError: the deployment names no such tag, or the run does not carry it.
    """
    environ = os.environ if environ is None else environ
    tag = environ.get(PRINCIPAL_TAG_ENV, "").strip()
    if not tag:
        raise GateDecisionError(
            "this deployment does not say who launched a run: a gate decision from the Launchpad "
            f"needs {PRINCIPAL_TAG_ENV} set to the run tag its authentication sets (e.g. "
            "dagster/user on Dagster+, or a tag an authenticating proxy sets and strips from "
            "launches); until then decide with `marigold approve`/`marigold reject`, which check "
            "the OS user running them"
        )
    value = (tags.get(tag) or "").strip()
    if not value:
        raise GateDecisionError(
            f"the decision run carries no `{tag}` tag naming the user who launched it; launch it "
            "through the deployment's authenticated UI"
        )
    return Principal("run_tag", value, frozenset(), f"run tag {tag}")


@dataclass(frozen=True)
class ApproverMap:
    """Approver name -> the OS users/verified users and OS groups that may act as it."""

    users: Mapping[str, frozenset[str]]
    groups: Mapping[str, frozenset[str]]
    source: str | None = None

    def may_act_as(self, principal: Principal, name: str) -> bool:
        if name not in self.users and name not in self.groups:
            return principal.name == name
        allowed_users = self.users.get(name, frozenset())
        allowed_groups = self.groups.get(name, frozenset())
        return principal.name in allowed_users or bool(principal.groups & allowed_groups)

    def who_may_act_as(self, name: str) -> str:
        if name not in self.users and name not in self.groups:
            return f"only a principal named '{name}' (no {APPROVERS_ENV} entry for it)"
        users = ", ".join(sorted(self.users.get(name, ()))) or "none"
        groups = ", ".join(sorted(self.groups.get(name, ()))) or "none"
        return f"users: {users}; groups: {groups} (from {self.source})"


def load_approver_map(environ: Mapping[str, str] | None = None) -> ApproverMap:
    """The approver map named by `MARIGOLD_APPROVERS` (empty when unset).

    Raises:
        GateDecisionError: the file is missing or not `{name: {users: [...], groups: [...]}}`.
    """
    environ = os.environ if environ is None else environ
    location = environ.get(APPROVERS_ENV, "").strip()
    if not location:
        return ApproverMap({}, {}, None)
    path = Path(location)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise GateDecisionError(
            f"{APPROVERS_ENV}={location} cannot be read as YAML ({type(error).__name__})"
        ) from None
    shape = (
        f"{APPROVERS_ENV} file {location} must map approver names to "
        "{users: [...], groups: [...]}"
    )
    if not isinstance(data, dict):
        raise GateDecisionError(shape)
    users: dict[str, frozenset[str]] = {}
    groups: dict[str, frozenset[str]] = {}
    for name, entry in data.items():
        if (
            not isinstance(name, str)
            or not isinstance(entry, dict)
            or set(entry)
            - {
                "users",
                "groups",
            }
        ):
            raise GateDecisionError(f"{shape}; entry {name!r} is not")
        for field, into in (("users", users), ("groups", groups)):
            listed = entry.get(field) or []
            if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
                raise GateDecisionError(f"{shape}; {name}.{field} is not a list of names")
            into[name] = frozenset(listed)
    return ApproverMap(users, groups, location)
