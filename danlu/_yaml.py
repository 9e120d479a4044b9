"""Reading YAML the way people write it, and refusing documents no recipe needs.

PyYAML follows YAML 1.1, where ``3e-4`` is text (a float needs a dot and a signed exponent),
``010`` is octal 8 and ``1:30`` is the integer 90. People mean numbers, so this loader reads
numbers as YAML 1.2 and Python do: ``3e-4``, ``1E5``, ``+1e-3``, ``.5``, ``5.``, ``-2e-3``,
``1_000`` (underscores between digits), ``0x1F``, ``0o17``, ``0b101``, ``.inf``, ``.nan``;
``010`` is ten and ``1:30`` stays text. Anything else that merely looks odd stays a string.

Numbers keep the text they were written as (``YamlInt.text``, ``YamlFloat.text``), so that a
key that expects a string can take ``name: 1e3`` as the text ``1e3``; :func:`plain` turns them
back into plain ``int`` / ``float`` for everything else.

A recipe is a few hundred nodes, so the loader refuses, while composing and before anything is
built: documents over ``MAX_BYTES``, nesting deeper than ``MAX_DEPTH``, more than ``MAX_NODES``
nodes once aliases are expanded (the "billion laughs" bomb), recursive aliases, and a key that
appears twice in one mapping (YAML would silently keep the last one).
"""
from __future__ import annotations

import math
import re

import yaml
from yaml.nodes import MappingNode, ScalarNode

MAX_BYTES = 1 << 20
MAX_DEPTH = 50
MAX_NODES = 100_000

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_MERGE_TAG = "tag:yaml.org,2002:merge"

_DIGITS = r"[0-9](?:_?[0-9])*"
_EXP = r"[eE][-+]?[0-9]+"
INT_RE = re.compile(rf"^[-+]?(?:{_DIGITS}|0x[0-9a-fA-F](?:_?[0-9a-fA-F])*|0o[0-7](?:_?[0-7])*|0b[01](?:_?[01])*)$")
FLOAT_RE = re.compile(
    rf"^[-+]?(?:{_DIGITS}\.(?:{_DIGITS})?(?:{_EXP})?"   # 1.  1.5  1.5e-3
    rf"|\.{_DIGITS}(?:{_EXP})?"                          # .5  .5e3
    rf"|{_DIGITS}{_EXP}"                                 # 1e5  3e-4
    rf"|\.(?:inf|Inf|INF))$"                             # .inf  -.inf
    rf"|^\.(?:nan|NaN|NAN)$")


class YamlRefused(Exception):
    """A document refused for its shape (size, depth, aliases, duplicate keys); ``line`` is 1-based."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class YamlInt(int):
    """An integer read from YAML, with the text it was written as."""

    text: str

    def __new__(cls, value: int, text: str):
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __reduce__(self):
        return (type(self), (int(self), self.text))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class YamlFloat(float):
    """A float read from YAML, with the text it was written as."""

    text: str

    def __new__(cls, value: float, text: str):
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    def __reduce__(self):
        return (type(self), (float(self), self.text))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


def parse_int(text: str) -> int | None:
    """An integer as YAML 1.2 and Python spell it, or None."""
    t = text.strip()
    if not INT_RE.match(t):
        return None
    t = t.replace("_", "")
    sign = -1 if t[0] == "-" else 1
    t = t.lstrip("+-")
    base = {"0x": 16, "0o": 8, "0b": 2}.get(t[:2], 10)
    return sign * int(t[2:] if base != 10 else t, base)


def parse_float(text: str) -> float | None:
    """A float as YAML 1.2 spells it (``3e-4``, ``.5``, ``5.``, ``-.inf``, ``.nan``), or None."""
    t = text.strip()
    if not FLOAT_RE.match(t):
        return None
    low = t.lower()
    if low.endswith(".nan"):
        return math.nan
    if low.endswith(".inf"):
        return -math.inf if low.startswith("-") else math.inf
    return float(t.replace("_", ""))


def parse_number(text: str) -> int | float | None:
    """The number a text spells (an int when it is one), or None when it is not a number."""
    value = parse_int(text)
    return value if value is not None else parse_float(text)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 numbers, size limits and duplicate-key refusal."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}   # id(node) -> nodes it stands for, aliases expanded

    # --- composing: count nodes as aliases expand them, before anything is built -----------------

    def compose_node(self, parent, index):
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise YamlRefused("an alias refers to the list or mapping that holds it (a recursive alias); "
                                  "remove the alias", mark.line + 1)
            self._grow(size, mark)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlRefused(f"nested more than {MAX_DEPTH} levels deep; a recipe needs a few levels",
                              mark.line + 1)
        before = self._expanded
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._grow(1, mark)
        self._sizes[id(node)] = self._expanded - before
        return node

    def _grow(self, nodes: int, mark) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise YamlRefused(f"the document expands to more than {MAX_NODES:,} values once its aliases (*name) are "
                              f"expanded; write the values out or use fewer aliases", mark.line + 1)

    # --- building: one value per key ------------------------------------------------------------

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            _refuse_duplicate_keys(node)
        return super().construct_mapping(node, deep=deep)


def _refuse_duplicate_keys(node: MappingNode) -> None:
    seen: dict[tuple, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        key = (key_node.tag, key_node.value)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise YamlRefused(f"key '{key_node.value}' appears twice in one mapping (lines {seen[key]} and "
                              f"{line}); keep one", line)
        seen[key] = line


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    value = parse_int(text)
    if value is None:
        raise yaml.constructor.ConstructorError(None, None, f"'{text}' is not an integer", node.start_mark)
    return YamlInt(value, text)


def _construct_float(loader, node):
    text = loader.construct_scalar(node)
    value = parse_number(text)
    if value is None:
        raise yaml.constructor.ConstructorError(None, None, f"'{text}' is not a number", node.start_mark)
    return YamlFloat(float(value), text)


# YAML 1.1's number rules out, YAML 1.2's in (the class keeps its own copy of the table).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(_FLOAT_TAG, FLOAT_RE, list("-+0123456789."))
_Loader.add_implicit_resolver(_INT_TAG, INT_RE, list("-+0123456789"))
_Loader.add_constructor(_INT_TAG, _construct_int)
_Loader.add_constructor(_FLOAT_TAG, _construct_float)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper that quotes text which reads as something else either here (``1e3``,
    ``0o17``) or in plain YAML 1.1 (``1:30``, ``yes``), so every reader gets the text back."""


_Dumper.yaml_implicit_resolvers = {
    first: list(yaml.SafeDumper.yaml_implicit_resolvers.get(first, [])) + list(resolvers)
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()}


def dumps(data) -> str:
    """YAML text of plain data that :func:`loads` reads back to the same values and types."""
    return yaml.dump(plain(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def loads(text: str, *, keep_text: bool = False):
    """Plain data of one YAML document. Raises :class:`YamlRefused` for a refused shape and
    ``yaml.YAMLError`` for bad syntax. ``keep_text`` keeps numbers as YamlInt / YamlFloat."""
    if len(text) > MAX_BYTES:
        raise YamlRefused(f"{len(text):,} characters is too large for a recipe (at most {MAX_BYTES:,}); "
                          f"keep long lists in the data files")
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except RecursionError:   # a guard behind MAX_DEPTH: the scanner nests too
        raise YamlRefused(f"nested too deeply; a recipe needs a few levels") from None
    finally:
        loader.dispose()
    return data if keep_text else plain(data)


def plain(value):
    """``value`` with YamlInt / YamlFloat turned into int / float, in nested dicts and lists."""
    if isinstance(value, YamlInt):
        return int(value)
    if isinstance(value, YamlFloat):
        return float(value)
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def written(value) -> str:
    """How a value was written: its YAML text when it kept one, else its repr."""
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else repr(value)
