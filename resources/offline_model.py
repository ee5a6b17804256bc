"""`OfflineModel`: the `ModelClient` interface answered by deterministic rules, with NO MODEL.

For quickstarts, tests and CI where no SGLang server exists. It reads the data a `ModelCall`
carries (`subject`, `choices`, `choice_descriptions`, `json_schema`), never the prompt's
wording, and answers the same way every time:

- classify / decide (any call with `choices`): each choice scores the occurrences, in the
  subject, of the words of its name, of its description in `choice_descriptions`, and of the
  extra keywords configured for it in `keywords`. Words match when equal, or when the shorter
  (of at least 4 letters) starts the longer ("risk" matches "risky"). Common English words are
  ignored. The highest score wins; ties (including "nothing matched") go to the FIRST choice.
- extract (a `json_schema` call): per property, patterns by name, type and format: e-mail
  addresses, dates (normalised to ISO), money amounts, numbers, `Name: value` lines, enum
  values by keyword, booleans from `Name: yes/no`; the result is shaped to validate against the
  schema (what no rule found is filled with a schema-valid placeholder).
- generate / summarise: extractive, the leading sentences of the subject up to `max_new_tokens`.
- plan: a retrieval-style planner: `subject` is the goal, `choice_descriptions` maps each
  allowed capability to its description; capabilities are ranked by how many goal words their
  name and description share (ties in the given order), the best `plan_max_steps` are kept and
  chained in the order the goal first mentions them (each step depends on the one before), as
  a fragment `{reasoning, steps: [{id, uses, with, depends_on, reason}], done}`; `done` is true
  only when nothing matched. The fragment is shaped to the call's `json_schema` when it has one.

Token counts use `resources.token_count` (approximate); cost is always 0. At setup (or the first
call outside Dagster) it logs a WARNING that no model server is in use.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from grammar_ops.model import ModelCall, ModelError, ModelReply, complete_each
from resources.json_schema_instances import conform_instance, generate_instance
from resources.model_usage import ModelUsage
from resources.regex_choices import literal_alternatives
from resources.token_count import count_tokens, truncate_to_tokens

logger = logging.getLogger(__name__)

OFFLINE_WARNING = (
    "NO MODEL SERVER is in use: OfflineModel %r answers every model call from deterministic "
    "keyword and pattern rules. Bind SGLangResource (set MARIGOLD_SGLANG_URL) for real answers."
)

STOPWORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or that the this to was
    were will with into than then them they their these those which who whom whose what when
    where why how all any each per via use uses used using can may must should would could not
    no yes do does done also more most other some such only own same so too very just over out
    up about after before between both during under again further once here there our
    your""".split()
)
_WORD = re.compile(r"[A-Za-z0-9]+")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_SLASH_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        "january february march april may june july august september october november december"
        .split()
    )
}  # fmt: skip
_WORD_DATE = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+(\d{1,2}),?\s+(\d{4})\b", re.IGNORECASE)
_MONEY = re.compile(
    r"(?:[$€£]\s?(\d[\d,]*(?:\.\d+)?))|(?:(\d[\d,]*(?:\.\d+)?)\s?(?:USD|EUR|GBP|dollars?|euros?))",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_MONEY_WORDS = {"amount", "price", "cost", "total", "fee", "salary", "payment", "sum", "budget",
                "value", "fine", "penalty", "revenue"}  # fmt: skip
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def words(text: str) -> list[str]:
    """Lower-case words of `text` (letters and digits), common English words removed."""
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOPWORDS]


def _matches(word: str, keyword: str) -> bool:
    if word == keyword:
        return True
    short, long = (word, keyword) if len(word) <= len(keyword) else (keyword, word)
    return len(short) >= 4 and long.startswith(short)


def _score(subject_counts: Counter[str], keywords: set[str]) -> tuple[int, set[str]]:
    score = 0
    hits: set[str] = set()
    for word, count in subject_counts.items():
        for keyword in keywords:
            if _matches(word, keyword):
                score += count
                hits.add(word)
                break
    return score, hits


class OfflineModel(dg.ConfigurableResource):
    """Deterministic rules behind the `ModelClient` interface: no model, no server, cost 0.

    Example:
        >>> from grammar_ops.model import ModelCall
        >>> model = OfflineModel()
        >>> model.complete(ModelCall(purpose="classify", prompt="...", max_new_tokens=4,
        ...     choices=("low", "high"), subject="High exposure, unlimited liability",
        ...     choice_descriptions={"high": "unlimited liability or large exposure"})).value
        'high'
    """

    name: str = Field(
        default="offline-rules",
        description="The name replies report as their model (it is not a model).",
    )
    keywords: dict[str, list[str]] = Field(
        default_factory=dict,
        description=(
            "Extra keywords per label for classify/decide: label -> words or phrases that "
            "count for it when found in the subject."
        ),
    )
    plan_max_steps: int = Field(
        default=3, ge=1, description="Most capabilities the offline planner puts in one fragment."
    )

    _usage: ModelUsage = PrivateAttr(default_factory=ModelUsage)
    _warned: bool = PrivateAttr(default=False)

    @property
    def model_name(self) -> str:
        return self.name

    @property
    def usage(self) -> ModelUsage:
        """Usage counted since setup: `usage.run` for the run, `usage.step(key)` per step."""
        return self._usage

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Reset the usage counts and warn, once, that no model server is in use."""
        self._usage = ModelUsage()
        self._warned = False
        self._warn_once()

    def _warn_once(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(OFFLINE_WARNING, self.name)

    # ----------------------------------------------------------------- ModelClient

    def complete(self, call: ModelCall) -> ModelReply:
        """Answer one call by rules, or raise `ModelError` for a constraint rules cannot meet."""
        self._warn_once()
        started = time.perf_counter()
        try:
            text, value, finish = self._answer(call)
        except ModelError as error:
            error.prompt_tokens = count_tokens(call.prompt)  # the prompt was read, then refused
            self._usage.record_failure(error)
            raise
        reply = ModelReply(
            text=text,
            value=value,
            model=self.name,
            prompt_tokens=count_tokens(call.prompt),
            completion_tokens=count_tokens(text),
            latency_s=time.perf_counter() - started,
            finish_reason=finish,
        )
        self._usage.record(reply)
        return reply

    def complete_many(self, calls: Sequence[ModelCall]) -> list[ModelReply | ModelError]:
        """Answer each call in order; a call rules cannot answer yields its `ModelError`."""
        return complete_each(self.complete, calls)

    # ----------------------------------------------------------------- rules

    def _answer(self, call: ModelCall) -> tuple[str, Any, str]:
        subject = call.subject if call.subject is not None else call.prompt
        if call.choices is not None:
            choice = self.choose(subject, call.choices, call.choice_descriptions)
            return choice, choice, "stop"
        if call.purpose == "plan":
            fragment = self.plan(
                subject,
                _capabilities(call),
                call.json_schema,
                config_schemas=call.choice_schemas,
                columns=call.columns,
            )
            return json.dumps(fragment), fragment, "stop"
        if call.json_schema is not None:
            value = extract(subject, call.json_schema)
            return json.dumps(value), value, "stop"
        if call.regex is not None:
            alternatives = literal_alternatives(call.regex)
            if not alternatives:
                raise ModelError(
                    "OfflineModel cannot satisfy an arbitrary regex constraint; it handles "
                    "choices, regex alternations of literals, and json_schema. Bind "
                    "SGLangResource for this call"
                )
            choice = self.choose(subject, alternatives, call.choice_descriptions)
            return choice, choice, "stop"
        if call.ebnf is not None:
            raise ModelError(
                "OfflineModel cannot produce EBNF-constrained output; it handles choices, "
                "regex alternations and json_schema. Bind SGLangResource for this call"
            )
        text, cut = leading_sentences(subject, call.max_new_tokens)
        return text, text, "length" if cut else "stop"

    def choose(
        self,
        subject: str,
        choices: Sequence[str],
        descriptions: Mapping[str, str] | None = None,
    ) -> str:
        """Pick the choice whose keywords occur most in `subject`; ties go to the first."""
        if not choices:
            raise ModelError("a choices call needs at least one choice")
        counts = Counter(words(subject))
        lowered = subject.lower()
        best, best_score = choices[0], -1
        for choice in choices:
            keywords = set(words(choice.replace("_", " ")))
            if descriptions and choice in descriptions:
                keywords |= set(words(descriptions[choice]))
            score, _ = _score(counts, keywords)
            for phrase in self.keywords.get(choice, []):
                pattern = r"\b" + re.escape(phrase.lower()) + r"\b"
                score += len(re.findall(pattern, lowered))
            if score > best_score:
                best, best_score = choice, score
        return best

    def plan(
        self,
        goal: str,
        capabilities: Mapping[str, str],
        json_schema: Mapping[str, Any] | None = None,
        *,
        config_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        columns: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Rank capabilities by words shared with the goal and return a plan fragment.

        Each step's `with` gives what its configuration schema requires (less what the template
        pinned): from the schema's defaults and enums, from the columns the goal mentions (or
        the first text-like column), the goal itself for a prompt, and `true` for a row
        expression, so the fragment validates; it stays a labelled stand-in, not a model.
        """
        goal_counts = Counter(set(words(goal)))
        ranked = []
        for order, (name, description) in enumerate(capabilities.items()):
            keywords = set(words(name.replace("_", " ").replace(".", " "))) | set(
                words(description)
            )
            score, hits = _score(goal_counts, keywords)
            if score > 0:
                ranked.append((-score, order, name, hits))
        ranked.sort()
        chosen = ranked[: max(0, self.plan_max_steps)]
        position = {word: i for i, word in reversed(list(enumerate(words(goal))))}
        # Chain in the order the goal first mentions each capability's matched words.
        chosen.sort(key=lambda item: min(position.get(hit, len(position)) for hit in item[3]))
        steps: list[dict[str, Any]] = []
        for _, _, name, hits in chosen:
            slug = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
            steps.append(
                {
                    "id": f"s{len(steps) + 1}_{slug}",
                    "uses": name,
                    "with": _config_for(
                        (config_schemas or {}).get(name), goal, list(columns or ())
                    ),
                    "depends_on": [steps[-1]["id"]] if steps else [],
                    "reason": "its description shares the goal words: " + ", ".join(sorted(hits)),
                }
            )
        reasoning = (
            f"Offline rules, no model: chose the {len(steps)} of {len(capabilities)} allowed "
            "capabilities whose names and descriptions share the most words with the goal, "
            "chained in the order the goal mentions them."
            if steps
            else "Offline rules, no model: no allowed capability shares a word with the goal."
        )
        fragment: dict[str, Any] = {"reasoning": reasoning, "steps": steps, "done": not steps}
        if json_schema is not None:
            return dict(conform_instance(json_schema, fragment))
        return fragment


def _goal_columns(goal: str, columns: list[str]) -> list[str]:
    """Columns the goal names (a column `annual_value_usd` is named by "annual value")."""
    said = set(words(goal))
    named = [c for c in columns if set(words(c.replace("_", " "))) & said]
    return sorted(named, key=lambda c: goal.lower().find(c.split("_")[0].lower()))


def _text_column(columns: list[str]) -> str:
    for column in columns:
        if column.lower() in {"text", "body", "content", "description"}:
            return column
    return columns[0] if columns else "text"


def _config_for(schema: Mapping[str, Any] | None, goal: str, columns: list[str]) -> dict[str, Any]:
    """What `schema` requires, filled by rules (plus `by` for a grouping the goal asks for)."""
    if not schema:
        return {}
    defs = schema.get("$defs", {})
    properties = schema.get("properties", {})
    named = _goal_columns(goal, columns)
    config: dict[str, Any] = {}
    wanted = list(schema.get("required", []))
    if "by" in properties and "by" not in wanted and named:
        wanted.append("by")
    for key in wanted:
        if key in properties:
            config[key] = _value_for(key, properties[key], defs, goal, columns, named)
    return config


def _value_for(
    key: str,
    schema: Mapping[str, Any],
    defs: Mapping[str, Any],
    goal: str,
    columns: list[str],
    named: list[str],
) -> Any:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        schema = defs.get(ref.rsplit("/", 1)[-1], {})
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        schema = next((o for o in options if o.get("type") != "null"), options[0])
        if "$ref" in schema:
            return _value_for(key, schema, defs, goal, columns, named)
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if key in {"where", "if", "condition"}:
        return "true"
    if key == "prompt" or key == "instructions":
        return goal
    if kind == "string":
        if key in {"field", "text_field"}:
            return _text_column(named) if named else _text_column(columns)
        return named[0] if named else _text_column(columns)
    if kind == "integer" or kind == "number":
        low = schema.get("exclusiveMinimum", schema.get("minimum", 0))
        return max(int(low) + 1, min(int(schema.get("maximum", 256)), 256))
    if kind == "boolean":
        return False
    if kind == "array":
        items = schema.get("items", {})
        if items.get("type") == "string" or not items:
            return named[:2] or columns[:1]
        item = _value_for(key, items, defs, goal, columns, named)
        return [item]
    if kind == "object":
        inner = {"type": "object", **schema}
        if inner.get("properties"):
            return _config_for({**inner, "$defs": defs}, goal, columns)
        return {"type": "object", "properties": {"value": {"type": "string"}}}
    return None


def _capabilities(call: ModelCall) -> dict[str, str]:
    if call.choice_descriptions:
        return dict(call.choice_descriptions)
    return {}


def leading_sentences(text: str, max_tokens: int) -> tuple[str, bool]:
    """The leading sentences of `text` that fit in `max_tokens` approximate tokens.

    Returns:
        The text, and whether a sentence had to be cut (the first one was too long).
    """
    sentences = [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]
    out: list[str] = []
    used = 0
    for sentence in sentences:
        size = count_tokens(sentence)
        if used + size > max_tokens:
            if not out:
                return truncate_to_tokens(sentence, max_tokens)
            break
        out.append(sentence)
        used += size
    return " ".join(out), False


# ----------------------------------------------------------------------- extraction


def extract(text: str, schema: Mapping[str, Any]) -> Any:
    """Fill `schema`'s properties from `text` by pattern, shaped to validate against `schema`."""
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    preferred: dict[str, Any] = {}
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            if isinstance(sub, Mapping):
                found = _extract_property(text, name, sub)
                if found is not None:
                    preferred[name] = found
    if not isinstance(properties, Mapping):
        return generate_instance(schema)
    return conform_instance(schema, preferred)


def _labelled_value(text: str, name: str) -> str | None:
    label = re.escape(name.replace("_", " ")).replace(r"\ ", r"[ _-]?")
    match = re.search(rf"^\s*{label}\s*:\s*(.+?)\s*$", text, re.IGNORECASE | re.MULTILINE)
    return match.group(1) if match else None


def _dates(text: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for m in _ISO_DATE.finditer(text):
        found.append((m.start(), m.group(0)))
    for m in _SLASH_DATE.finditer(text):
        day, month, year = int(m.group(1)), int(m.group(2)), m.group(3)
        if month > 12 and day <= 12:
            day, month = month, day  # US order
        found.append((m.start(), f"{year}-{month:02d}-{day:02d}"))
    for m in _WORD_DATE.finditer(text):
        month = _MONTHS[m.group(1).lower()]
        found.append((m.start(), f"{m.group(3)}-{month:02d}-{int(m.group(2)):02d}"))
    return [value for _, value in sorted(found)]


def _money(text: str) -> list[float]:
    out = []
    for m in _MONEY.finditer(text):
        raw = (m.group(1) or m.group(2) or "").replace(",", "")
        try:
            out.append(float(raw))
        except ValueError:
            continue
    return out


def _numbers(text: str) -> list[float]:
    out = []
    for m in _NUMBER.finditer(text):
        try:
            out.append(float(m.group(0).replace(",", "")))
        except ValueError:
            continue
    return out


def _numbers_near(text: str, name_words: set[str]) -> list[float]:
    """Numbers written right before or after one of the property's words ("14 pages")."""
    out = []
    for word in sorted(name_words):
        stem = re.escape(word[:-1] if len(word) > 4 and word.endswith("s") else word)
        pattern = rf"(-?\d[\d,]*(?:\.\d+)?)\s+{stem}\w*|\b{stem}\w*\W{{1,3}}(-?\d[\d,]*(?:\.\d+)?)"
        for match in re.finditer(pattern, text, re.IGNORECASE):
            raw = (match.group(1) or match.group(2)).replace(",", "")
            out.append(float(raw))
    return out


def _extract_property(text: str, name: str, schema: Mapping[str, Any]) -> Any:
    kind = schema.get("type")
    fmt = str(schema.get("format", ""))
    name_words = set(words(name.replace("_", " ")))
    labelled = _labelled_value(text, name)
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        if "email" in name.lower() or (items or {}).get("format") == "email":
            return _EMAIL.findall(text)
        if "date" in name.lower():
            return _dates(text)
        if labelled is not None:
            return [part.strip() for part in labelled.split(",") if part.strip()]
        return None
    if "enum" in schema:
        options = [o for o in schema["enum"] if isinstance(o, str)]
        source = labelled if labelled is not None else text
        counts = Counter(words(source))
        scored = [(_score(counts, set(words(o.replace("_", " "))))[0], -i, o)
                  for i, o in enumerate(options)]  # fmt: skip
        best = max(scored, default=None)
        return best[2] if best and best[0] > 0 else None
    if kind == "boolean":
        if labelled is None:
            return None
        return labelled.strip().lower() in ("yes", "true", "y", "1")
    if fmt == "email" or "email" in name.lower():
        emails = _EMAIL.findall(labelled or text)
        return emails[0] if emails else None
    if fmt in ("date", "date-time") or "date" in name_words:
        dates = _dates(labelled or text)
        if not dates:
            return None
        return dates[0] + ("T00:00:00Z" if fmt == "date-time" else "")
    if kind in ("number", "integer"):
        values = (
            (_money(labelled or text) if name_words & _MONEY_WORDS else [])
            or _numbers(labelled or "")
            or _numbers_near(text, name_words)
            or _numbers(text)
        )
        if not values:
            return None
        return int(values[0]) if kind == "integer" else values[0]
    if kind == "string" or kind is None:
        if labelled is not None:
            return labelled
        if name_words & _MONEY_WORDS:
            match = _MONEY.search(text)
            return match.group(0) if match else None
        if name_words & {"summary", "text", "description", "title", "content"}:
            return leading_sentences(text, 40)[0] or None
    return None
