"""A scripted planner and the planned template the planning tests share."""

from __future__ import annotations

import json
from typing import Any

from resources.sglang_test_server import GenerationRequest, ScriptedAnswer, default_responder

TEMPLATE = """name: planned
version: 1
models: {{planner: planner_model, worker: worker_model}}
budget:
  max_steps: {max_steps}
  max_tokens: {max_tokens}
  max_cost_usd: 5
  max_fanout: 8
  max_planning_phases: 3
steps:
  - {{name: load, uses: t.rows, with: {{n: {rows}}}}}
  - name: review
    kind: planning
    depends_on: [load]
    planning:
      goal: Mark every row, then count the rows per trail.
      allow:
        - t.mark
        - t.explode
        - t.ask_each
        - llm.generate
        - aggregate.count
        - {{uses: transform.filter, with: {{where: "id < 2"}}}}
      max_steps: 4
      max_depth: {max_depth}
      max_phases: {max_phases}
      max_attempts: 3
  - {{name: finish, kind: converge, depends_on: [review]}}
"""


def step(id: str, uses: str, depends_on: list[str] | None = None, **config: Any) -> dict:
    return {
        "id": id,
        "uses": uses,
        "with": config,
        "depends_on": depends_on or [],
        "reason": f"{id} because the goal asks for it",
    }


def fragment(*steps: dict, done: bool = False, reasoning: str = "mark, then count") -> dict:
    return {"reasoning": reasoning, "steps": list(steps), "done": done}


def dangling_chain(steps: int, uses: str) -> dict:
    """An answer of `steps` chained steps that each also name a step that does not exist: as
    large as an answer gets, wrong in as many places."""
    return fragment(
        *(
            step(f"s{i}", uses, ([f"s{i - 1}"] if i else []) + [f"missing{i}"])
            for i in range(steps)
        ),
        reasoning="many",
    )


class ScriptedPlanner:
    """Answers planner calls from a script, in order; every other call gets the default."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.prompts: list[str] = []

    def __call__(self, request: GenerationRequest) -> str | ScriptedAnswer:
        properties = (request.json_schema or {}).get("properties", {})
        if "steps" not in properties:
            return default_responder(request)
        self.prompts.append(request.prompt)
        if not self.answers:
            raise AssertionError("the planner was called more often than the test scripted")
        answer = self.answers.pop(0)
        return answer if isinstance(answer, (str, ScriptedAnswer)) else json.dumps(answer)
