"""YAML parsing that remembers where every value came from, so errors can name file:line.

Parsing is bounded so that no file can make loading hang or exhaust memory: the text is at most
`MAX_TEMPLATE_BYTES`, nesting at most `MAX_DEPTH` levels, at most `MAX_ALIASES` aliases, and at
most `MAX_NODES` values once every alias is expanded (a "billion laughs" file is refused before
its expansion is built), and at most `MAX_DEPTH` levels deep once expanded too (a chain of
aliases, each nesting the previous one a few levels deeper, is refused before anything recurses
through it). Recursive aliases (an anchor used inside itself) are refused too, and so is a key
repeated in one mapping (YAML would silently keep the last value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

from marigold_dagster.errors import YamlLimitError, YamlSyntaxError

NodePath = tuple[str | int, ...]

MAX_TEMPLATE_BYTES = 1_048_576
MAX_DEPTH = 64
MAX_ALIASES = 1_000
MAX_NODES = 100_000


@dataclass(frozen=True)
class YamlSource:
    """Parsed YAML data plus the 1-based line of each node, keyed by its path in the data."""

    data: Any
    lines: dict[NodePath, int]

    def line_of(self, path: NodePath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        for cut in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:cut]))
            if line is not None:
                return line
        return None


def parse_yaml(text: str) -> YamlSource:
    """Parse `text` (one YAML document, safe subset: no tags, no Python objects), within limits.

    Raises:
        YamlLimitError: the text is over a limit (size, depth, aliases, expanded values).
        YamlSyntaxError: the text is not valid YAML, or a value cannot be read (`2024-13-01`).
    """
    check_size(len(text.encode("utf-8")))
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
        data = loader.construct_document(node) if node is not None else None
    except YamlSyntaxError:
        raise
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        if mark is not None and _flow_depth_before(text, mark.index) >= MAX_DEPTH:
            # The parser has a nesting limit of its own that can run before ours: report ours.
            raise _too_deep(mark.line + 1) from None
        raise YamlSyntaxError(_describe(error), _line_of_mark(error)) from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1 if error.position >= 0 else None
        raise YamlSyntaxError(f"not valid YAML: {error}", line) from None
    except yaml.YAMLError as error:
        raise YamlSyntaxError(f"not valid YAML: {error}", None) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as error:
        raise YamlSyntaxError(f"not valid YAML: a value cannot be read: {error}", None) from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[NodePath, int] = {}
    if node is not None:
        _record_lines(node, (), lines)
    return YamlSource(data=data, lines=lines)


def check_size(size: int) -> None:
    """Refuse a template of `size` bytes when it is over `MAX_TEMPLATE_BYTES`.

    Raises:
        YamlLimitError: naming the size and the limit.
    """
    if size > MAX_TEMPLATE_BYTES:
        raise YamlLimitError(
            f"the file is {size:,} bytes, over the limit of {MAX_TEMPLATE_BYTES:,} bytes "
            "(MAX_TEMPLATE_BYTES) for a template; split it or move data into template inputs",
            None,
        )


def _too_deep(line: int | None) -> YamlLimitError:
    return YamlLimitError(
        f"values nested deeper than {MAX_DEPTH} levels (MAX_DEPTH), the limit for a template",
        line,
    )


def _flow_depth_before(text: str, index: int) -> int:
    """How many flow collections (`[`, `{`) are open at `index`, outside quoted scalars."""
    depth = 0
    quote = ""
    escaped = False
    for char in text[:index]:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\" and quote == '"':
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
    return depth


def _describe(error: yaml.MarkedYAMLError) -> str:
    message = f"not valid YAML: {error.problem or error}"
    if error.context and error.context_mark is not None:
        opened = error.context.removeprefix("while parsing ").removeprefix("a ")
        message += f" (in the {opened} opened on line {error.context_mark.line + 1})"
    return message


def _line_of_mark(error: yaml.MarkedYAMLError) -> int | None:
    mark = error.problem_mark or error.context_mark
    return mark.line + 1 if mark is not None else None


if yaml.__with_libyaml__:

    class _SafeParsing(Composer, SafeConstructor, Resolver, yaml.cyaml.CParser):
        """libyaml's parser (fast) under PyYAML's own composer (so composing can be bounded)."""

        def __init__(self, text: str):
            yaml.cyaml.CParser.__init__(self, text)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _SafeParsing(yaml.SafeLoader):  # type: ignore[no-redef]
        """PyYAML's pure-Python safe loader."""


class _BoundedLoader(_SafeParsing):
    """A safe loader that stops composing at the depth and alias limits, and turns a value it
    cannot construct (an impossible date, `!!int abc`) into a located YAML error."""

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimitError(
                    f"more than {MAX_ALIASES:,} aliases (MAX_ALIASES), the limit for a template",
                    line,
                )
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _too_deep(line)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as error:
            raise YamlSyntaxError(
                f"not valid YAML: cannot read the value `{str(node.value)[:80]}` "
                f"as {node.tag.rsplit(':', 1)[-1]}: {error}",
                node.start_mark.line + 1,
            ) from None


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands to more than `MAX_NODES` values or `MAX_DEPTH` levels,
    contains itself, or repeats a key in a mapping.

    Sizes and depths are memoised per node, so an alias bomb or chain is measured without being
    expanded, in time linear in the nodes written.
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            on_path.discard(key)
            size = 1 + sum(sizes[id(child)] for child in children)
            if size > MAX_NODES:
                raise YamlLimitError(
                    f"this value expands to more than {MAX_NODES:,} values once its aliases "
                    f"are expanded (MAX_NODES), the limit for a template",
                    node.start_mark.line + 1,
                )
            depth = 1 + max((depths[id(child)] for child in children), default=0)
            if depth > MAX_DEPTH:
                raise YamlLimitError(
                    f"this value nests deeper than {MAX_DEPTH} levels once its aliases are "
                    "expanded (MAX_DEPTH), the limit for a template",
                    node.start_mark.line + 1,
                )
            sizes[key] = size
            depths[key] = depth
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise YamlLimitError(
                "an anchor is used inside its own value (a recursive alias); templates "
                "cannot contain recursive values",
                node.start_mark.line + 1,
            )
        _check_unique_keys(node)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_unique_keys(node: yaml.Node) -> None:
    """Refuse a mapping that writes one key twice (`<<` merges may override, as YAML says)."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            raise YamlSyntaxError(
                f"key `{str(key_node.value)[:80]}` appears twice in one mapping (first on line "
                f"{seen[key_node.value]}); YAML would keep only the last value, so write each "
                "key once",
                line,
            )
        seen[key_node.value] = line


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _record_lines(node: yaml.Node, path: NodePath, lines: dict[NodePath, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            if not isinstance(key, str):
                continue  # a sequence or mapping as a key: the constructor has refused it
            # A key's own line is where the problem is when the value spans lines.
            lines[(*path, key)] = key_node.start_mark.line + 1
            _record_value(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, (*path, index), lines)


def _record_value(node: yaml.Node, path: NodePath, lines: dict[NodePath, int]) -> None:
    key_line = lines[path]
    _record_lines(node, path, lines)
    if not isinstance(node, yaml.ScalarNode):
        lines[path] = key_line
