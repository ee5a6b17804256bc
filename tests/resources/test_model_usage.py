"""Per-run and per-step usage counting."""

import threading

from grammar_ops.model import ModelReply
from resources.model_errors import ModelServerError
from resources.model_usage import ModelUsage


def reply(tokens: int) -> ModelReply:
    return ModelReply(text="x", value="x", model="m", prompt_tokens=tokens, retries=1,
                      cost_usd=0.5)  # fmt: skip


def test_steps_and_run_are_counted_separately() -> None:
    usage = ModelUsage()
    usage.record(reply(1))
    with usage.step("a") as a:
        usage.record(reply(2))
        usage.record_failure(ModelServerError("boom", retries=3))
    with usage.step("b") as b:
        usage.record(reply(4))
    assert (usage.run.requests, usage.run.prompt_tokens, usage.run.retries) == (4, 7, 6)
    assert (a.requests, a.failures, a.prompt_tokens, a.retries) == (2, 1, 2, 4)
    assert b.prompt_tokens == 4 and usage.run.cost_usd == 1.5
    assert set(usage.steps) == {"a", "b"}


def test_step_scopes_are_per_thread() -> None:
    usage = ModelUsage()

    def work(key: str) -> None:
        with usage.step(key):
            for _ in range(100):
                usage.record(reply(1))

    threads = [threading.Thread(target=work, args=(k,)) for k in "xyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [usage.steps[k].requests for k in "xyz"] == [100, 100, 100]
    assert usage.run.requests == 300
