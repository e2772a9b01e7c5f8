"""Reading the YAML file: the data, the line of every key, and limits against hostile input.

``yaml.safe_load`` alone loses the line numbers (a problem names its line) and lets a small
file cost seconds, gigabytes or a traceback (an alias bomb, deep nesting, huge numbers).
:func:`read_yaml` refuses such a file with a :class:`~cti.settings.errors.ConfigError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, TypeAlias

import yaml

from cti.settings.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_INT_DIGITS",
    "MAX_YAML_NODES",
    "Loc",
    "read_yaml",
]


Loc: TypeAlias = tuple[str | int, ...]

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"

# Limits of what the loader reads (docs/configuration.md, "Limits"): far above any real
# configuration, far below what hurts. Without them a 400-byte file of nested aliases (a
# "billion laughs") expands to 9**9 items in the line indexer (35 s, 3 GB, MemoryError),
# 5,000 nested `[` overflow the composer's recursion, and a 5,000-digit number is a
# ValueError from int() — each a traceback and exit 1 instead of a `config error:`.
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024
MAX_YAML_DEPTH: Final = 64
MAX_YAML_NODES: Final = 200_000  # after aliases are expanded: a node per key, value, item
MAX_YAML_INT_DIGITS: Final = 100


class _TooBigError(Exception):
    """The YAML is beyond a loader limit: a message, and the line where it was noticed."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses absurd depth and absurd integers early."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        # the composer recurses once per level: count levels before Python's stack does
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.line + 1  # the reader's position: where the depth was reached
                msg = f"nested more than {MAX_YAML_DEPTH} levels deep"
                raise _TooBigError(msg, line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(c.isalnum() for c in str(node.value))
        if digits > MAX_YAML_INT_DIGITS:
            msg = f"a number of {digits} digits (at most {MAX_YAML_INT_DIGITS})"
            raise _TooBigError(msg, node.start_mark.line + 1)
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _expanded_size(root: yaml.Node) -> int:
    """How many nodes the document has with every alias expanded (shared nodes counted once
    per use, memoised, so a bomb is measured without being expanded). Raises
    :class:`_TooBigError` beyond :data:`MAX_YAML_NODES`, or for an alias inside itself."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:
            msg = "an alias refers to a node that contains it (a recursive alias)"
            raise _TooBigError(msg, node.start_mark.line + 1)
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
        active.discard(key)
        if total > MAX_YAML_NODES:
            msg = (
                f"more than {MAX_YAML_NODES:,} values once its aliases (*name) are "
                "expanded (an alias bomb?)"
            )
            raise _TooBigError(msg, node.start_mark.line + 1)
        sizes[key] = total
        return total

    return size(root)


def read_yaml(file: Path) -> tuple[Any, dict[Loc, int], list[tuple[Loc, int]]]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problem = ConfigProblem(str(file), "file not found (pass -c FILE or set CTI_CONFIG)")
        raise ConfigError([problem], path=file) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(file), f"cannot read: {exc}")], path=file) from exc
    if len(text) > MAX_CONFIG_BYTES:
        msg = f"larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: not a configuration file?"
        raise ConfigError([ConfigProblem(str(file), msg)], path=file)
    try:
        return _parse_yaml(text)
    except _TooBigError as exc:
        problem = ConfigProblem(str(file), f"refused: {exc}", exc.line)
        raise ConfigError([problem], path=file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        problem = ConfigProblem(
            str(file), f"YAML syntax error: {what}", mark.line + 1 if mark else None
        )
        raise ConfigError([problem], path=file) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(str(file), f"YAML error: {exc}")], path=file) from exc


def _parse_yaml(text: str) -> tuple[Any, dict[Loc, int], list[tuple[Loc, int]]]:
    """``yaml.safe_load`` that also returns the line of every key and sequence item."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[Loc, int] = {}
        duplicates: list[tuple[Loc, int]] = []
        if node is not None:
            _expanded_size(node)  # before anything walks the aliases expanded
            # Walk before constructing: construction flattens `<<` merges in place.
            _index_lines(node, (), lines, duplicates, set())
        data = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return data, lines, duplicates


def _index_lines(
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    duplicates: list[tuple[Loc, int]],
    active: set[int],
) -> None:
    if id(node) in active:  # a recursive alias; pydantic will complain about it
        return
    active.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            child = (*loc, key_node.value)
            if child in lines:
                duplicates.append((child, key_node.start_mark.line + 1))
                continue
            lines[child] = key_node.start_mark.line + 1
            _index_lines(value_node, child, lines, duplicates, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            lines[child] = item.start_mark.line + 1
            _index_lines(item, child, lines, duplicates, active)
    active.discard(id(node))
