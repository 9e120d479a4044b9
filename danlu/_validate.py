"""The machinery of the recipe schema: a key is a :class:`Field` (type, default, range, choices,
unions, item ranges), a mapping of keys a :class:`Section` (optionally picking keys by a kind), and
a constraint across keys a :class:`Rule` — constraints as data, checked before any data is read.
danlu.recipe declares the schema with these; :func:`check_section` validates a value against one.

No torch, no numpy: validating a recipe keeps the command line fast.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import RecipeError, did_you_mean

_REQUIRED = object()


@dataclass(frozen=True)
class Rule:
    """A constraint declared as data, checked when the recipe is validated (before any data is read).

    On a :class:`Section`, ``keys`` are dotted key paths below that section; ``check`` gets their
    validated values and returns True when they are fine; ``message`` is the whole one-line text
    after ``SOURCE: `` (with the full key paths, what was found and how to fix it). On a
    :class:`Field`, ``keys`` stays empty: ``check`` gets the key's value and ``message`` follows the
    key path (``model.kernel_size`` + `` must be odd ...``). ``message`` is a format string over the
    values (``{0}``, ``{1}``, ...; ``{where}`` is the section's key path) or a callable of the values.
    """

    keys: tuple[str, ...] = ()
    check: Callable[..., bool] = bool
    message: str | Callable[..., str] = ""

    def broken(self, *values, where: str = "") -> str | None:
        """The message when ``values`` break the rule, else None."""
        if self.check(*values):
            return None
        return self.message(*values) if callable(self.message) else self.message.format(*values, where=where)


@dataclass(frozen=True)
class Field:
    """One leaf key: its type, default and constraints.

    ``item`` constrains the elements of a list: a type, or a Field of its own (with its range:
    ``item=Field(int, min=1)``); ``min_items`` / ``max_items`` bound the list's length.
    ``one_of`` makes the key a union of typed shapes (build it with :func:`union`): the value is
    kept as the first shape that takes it. ``rules`` are :class:`Rule` s on the value.
    """

    type: type | tuple
    default: Any = None
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    item: "type | tuple | Field | None" = None  # element type (or Field) of a list
    nullable: bool = True
    doc: str = ""
    allow_inf: bool = False  # a float key takes .inf / -.inf only when it says so; .nan never
    max_exclusive: bool = False
    min_items: int | None = None
    max_items: int | None = None
    one_of: "tuple[Field, ...] | None" = None
    rules: tuple[Rule, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


@dataclass(frozen=True)
class Section:
    """A nested mapping of keys. ``by_kind`` picks extra keys (a mapping of fields, or a Section
    with rules of its own) from the value of the key ``kind_key``; ``rules`` are the :class:`Rule` s
    across its keys (checked once all its keys are valid)."""

    fields: Mapping[str, Any]
    doc: str = ""
    by_kind: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    rules: tuple[Rule, ...] = ()
    kind_key: str = "kind"
    unknown_hint: str = ""         # added to the "must be one of" line of an unknown kind (how to add one)
    unlisted: tuple = ()           # kinds accepted but not listed in that line (placeholders)


def _f(type_, default=None, **kw) -> Field:
    return Field(type_, default, **kw)


def union(*shapes: Field, default=None, **kw) -> Field:
    """A key that takes one of several typed shapes, e.g. ``"auto"`` or a list of names:
    ``union(Field(str, choices=("auto",)), Field(list, item=str), default="auto")``. A shape's
    ``doc``, when given, is how the error message names it."""
    types = []
    for shape in shapes:
        for t in shape.type if isinstance(shape.type, tuple) else (shape.type,):
            if t not in types:
                types.append(t)
    return Field(tuple(types), default, one_of=tuple(shapes), **kw)


def sizes(count: int | None = None, *, least: int | None = None, most: int | None = None, doc: str = "",
          default=None, nullable: bool = True) -> Field:
    """A list of sizes (integers >= 1): ``count`` of them exactly, or ``least`` to ``most``."""
    if count is not None:
        least = most = count
    return Field(list, default, item=Field(int, min=1, nullable=False), min_items=least, max_items=most,
                 nullable=nullable, doc=doc)


NUM = (int, float)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            list: "a list", dict: "a mapping"}.get(t, t.__name__)


def _is_type(value, t) -> bool:
    types = t if isinstance(t, tuple) else (t,)
    if isinstance(value, bool):
        return bool in types
    if float in types and isinstance(value, int):
        return True
    return isinstance(value, types)


def _check_field(field: Field, value, where: str):
    if value is None:
        # null is a value only where the default is null, or where the key's doc says what null means
        # (max_leaf_nodes: "null: no limit"); elsewhere it would reach the code as None
        if field.nullable and (field.default is None or "null" in field.doc):
            return None
        if field.nullable:
            raise RecipeError(f"{where} must be {_type_name(field.type)}, got null; leave the key out for its "
                              f"default ({json.dumps(field.default)})")
        raise RecipeError(f"{where} must be {_type_name(field.type)}, got null")
    if isinstance(value, tuple):
        value = list(value)
    if field.one_of is not None:
        value = _check_union(field, value, where)
    else:
        value = _check_shape(field, value, where)
    for rule in field.rules:
        broken = rule.broken(value)
        if broken:
            raise RecipeError(f"{where} {broken}")
    return value


def _check_union(field: Field, value, where: str):
    """The value as the first shape that takes it; one that fits no shape is told every shape the
    key takes (a list of the right type but with a wrong element, which element is wrong)."""
    list_error = None
    for shape in field.one_of:
        if not _is_type(_as_written(value, shape.type), shape.type):
            continue
        try:
            return _check_shape(shape, value, where)
        except RecipeError as err:
            if shape.type is list:
                list_error = err
    if list_error is not None:
        raise list_error
    raise RecipeError(f"{where} must be {_expected(field)}; got {_shown(value)}")


def _check_shape(field: Field, value, where: str):
    value = _as_written(value, field.type)
    if not _is_type(value, field.type):
        raise RecipeError(f"{where} must be {_type_name(field.type)}, got {_shown(value)}")
    if field.choices is not None and value not in field.choices:
        opts = ", ".join(str(c) for c in field.choices)
        raise RecipeError(f"{where} must be one of {opts}; got {value!r}{did_you_mean(value, field.choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_finite(value, where, field.allow_inf)
        if field.min is not None and (value < field.min or (field.min_exclusive and value == field.min)):
            op = ">" if field.min_exclusive else ">="
            raise RecipeError(f"{where} must be {op} {_bound(field.min)}, got {_shown(value)}")
        if field.max is not None and (value > field.max or (field.max_exclusive and value == field.max)):
            op = "<" if field.max_exclusive else "<="
            raise RecipeError(f"{where} must be {op} {_bound(field.max)}, got {_shown(value)}")
    if isinstance(value, list):
        value = _check_items(field, value, where)
    if isinstance(value, float) and field.type is int:
        raise RecipeError(f"{where} must be an integer, got {value!r}")
    return _plain(value)


def _check_items(field: Field, value: list, where: str) -> list:
    few = field.min_items is not None and len(value) < field.min_items
    if few or (field.max_items is not None and len(value) > field.max_items):
        raise RecipeError(f"{where} must be {_expected(field)}, got {_plain(value)}")
    if field.item is None:
        return value
    item = field.item if isinstance(field.item, Field) else Field(field.item, nullable=False,
                                                                   allow_inf=field.allow_inf)
    return [_check_field(item, v, f"{where}[{i}]") for i, v in enumerate(value)]


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values", list: "lists",
           dict: "mappings"}
_COUNT = {1: "one", 2: "two", 3: "three", 4: "four"}


def _expected(field: Field) -> str:
    """What a value of this shape is, in words: ``sqrt, log2 or a number in (0, 1]``, ``two integers >= 1``."""
    return _or_list(_shapes_in_words(field))


def _shapes_in_words(field: Field) -> list[str]:
    if field.one_of is not None:
        return [words for shape in field.one_of for words in _shapes_in_words(shape)]
    if field.doc and field.type is not list:
        return [field.doc]
    if field.choices is not None:
        return [str(c) for c in field.choices]
    if field.type is list:
        return [_list_in_words(field)]
    number = isinstance(field.type, tuple) and set(field.type) == {int, float}
    return [("a number" if number else _type_name(field.type)) + _range_text(field)]


def _list_in_words(field: Field) -> str:
    item = field.item
    types = item.type if isinstance(item, Field) else item
    types = types if isinstance(types, tuple) else (types,)
    if item is None:
        noun = "values"
    elif float in types:
        noun = "numbers"
    else:
        noun = " or ".join(_PLURAL.get(t, t.__name__) for t in types)
    if isinstance(item, Field):
        noun += _range_text(item)
    lo, hi = field.min_items, field.max_items
    if lo is not None and lo == hi:
        return f"{_COUNT.get(lo, lo)} {noun}"
    if lo is not None and hi is not None:
        return f"{lo} to {hi} {noun}"
    if lo is not None:
        return f"at least {lo} {noun}"
    if hi is not None:
        return f"at most {hi} {noun}"
    return f"a list of {noun}"


def _range_text(field: Field) -> str:
    lo, hi = field.min, field.max
    if lo is not None and hi is not None:
        opening, closing = "(" if field.min_exclusive else "[", ")" if field.max_exclusive else "]"
        return f" in {opening}{_bound(lo)}, {_bound(hi)}{closing}"
    if lo is not None:
        return f" {'>' if field.min_exclusive else '>='} {_bound(lo)}"
    if hi is not None:
        return f" {'<' if field.max_exclusive else '<='} {_bound(hi)}"
    return ""


def _or_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _as_written(value, t):
    """Numbers as people write them, for the type a key expects: a numeric string such as '3e-4' is a
    number where a number is expected; a whole number written as 1e5 is an integer where one is
    expected; a number read from YAML where only a string fits is the text it was written as
    (``name: 1e3`` is the name '1e3')."""
    types = t if isinstance(t, tuple) else (t,)
    numeric = int in types or float in types
    if isinstance(value, str) and numeric and str not in types:
        from ._yaml import parse_number

        number = parse_number(value)
        if number is None:
            return value
        value = float(number) if int not in types else number
        written = True
    else:
        written = isinstance(getattr(value, "text", None), str)   # a YamlInt / YamlFloat
    if not written or isinstance(value, bool):
        return value
    if str in types and isinstance(value, float) and float not in types:
        return value.text   # label: 1e3 names the column '1e3'; an index is written 3
    if isinstance(value, float) and int in types and float not in types and value.is_integer():
        return int(value)
    if str in types and not _is_type(value, tuple(x for x in types if x is not str)):
        return value.text
    return value


def _check_finite(value, where: str, allow_inf: bool) -> None:
    if isinstance(value, float) and (math.isnan(value) or (math.isinf(value) and not allow_inf)):
        text = _shown(value)
        beyond = "" if any(w in text.lower() for w in ("inf", "nan")) else " (beyond the largest float)"
        raise RecipeError(f"{where} must be a finite number, got {text}{beyond}")


def _shown(value) -> str:
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else repr(value)


def _bound(x) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _plain(value):
    """Numbers read from YAML (int / float subclasses that keep their text) as plain int / float."""
    if isinstance(value, bool) or type(value) in (int, float):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _check_section(section: Section, data, where: str, source: str) -> dict:
    prefix = f"{where}." if where else ""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RecipeError(f"{source}: {where or 'the recipe'} must be a mapping of keys, got {data!r}")
    fields, rules = dict(section.fields), section.rules
    if section.by_kind is not None:
        kinds, kk = section.by_kind(), section.kind_key
        kind = data.get(kk, fields[kk].default)
        if not isinstance(kind, str):   # a list or mapping cannot name a kind (nor be looked up)
            raise RecipeError(f"{source}: {prefix}{kk} must be the name of one of {', '.join(sorted(kinds))}; "
                              f"got {_shown(kind)}")
        if kind not in kinds:
            shown = sorted(k for k in kinds if k not in section.unlisted)
            raise RecipeError(f"{source}: {prefix}{kk} must be one of {', '.join(shown)}; "
                              f"got {kind!r}{did_you_mean(kind, shown)}{section.unknown_hint}")
        extra = kinds[kind]
        if extra is None:  # a registered model that takes any keys
            return {k: _plain(copy.deepcopy(v)) for k, v in data.items()} | {kk: kind}
        if isinstance(extra, Section):
            extra, rules = extra.fields, rules + extra.rules
        fields.update(extra)
    out = {}
    for key in data:
        if key not in fields:
            shown = key if isinstance(key, str) and key.isprintable() else repr(key)   # one line, always
            raise RecipeError(f"{source}: unknown key {prefix}{shown}{did_you_mean(key, fields)}; "
                              f"allowed: {', '.join(sorted(fields))}")
    for key, spec in fields.items():
        path = f"{prefix}{key}"
        if isinstance(spec, Section):
            out[key] = _check_section(spec, data.get(key), path, source)
        elif key in data:
            try:
                out[key] = _check_field(spec, data[key], path)
            except RecipeError as err:
                raise RecipeError(f"{source}: {err}") from None
        elif spec.required:
            raise RecipeError(f"{source}: {path} is required")
        else:
            out[key] = copy.deepcopy(spec.default)
    _check_rules(rules, out, source, where)
    return out


def _check_rules(rules: tuple[Rule, ...], checked: dict, source: str, where: str = "") -> None:
    """A section's cross-key rules, over its validated values."""
    for rule in rules:
        values = []
        for key in rule.keys:
            node = checked   # the key "" stands for the whole checked section
            for part in key.split(".") if key else ():
                node = node[part]
            values.append(node)
        broken = rule.broken(*values, where=where)
        if broken:
            raise RecipeError(f"{source}: {broken}")


class Node(dict):
    """A validated recipe section: a dict whose keys read as attributes (``r.optimizer.lr``)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        raise AttributeError("a recipe is read-only once validated; use Recipe.with_overrides")


def _freeze(d):
    if isinstance(d, dict):
        return Node({k: _freeze(v) for k, v in d.items()})
    return d


def _thaw(d):
    if isinstance(d, dict):
        return {k: _thaw(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_thaw(v) for v in d]
    return d


def check_section(section: Section, data, where: str, source: str) -> Node:
    """Validate one section on its own (e.g. a data block given as a plain dict)."""
    return _freeze(_check_section(section, data, where, source))
