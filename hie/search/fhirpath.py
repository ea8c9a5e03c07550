"""The FHIRPath subset used by the R4 search parameter definitions, compiled statically.

Search parameter expressions use a small part of FHIRPath: paths, ``|`` unions,
``(x as T)``, ``x.as(T)``, ``x.ofType(T)``, ``x.where(resolve() is T)``,
``x.where(field = 'literal')``, ``x.extension('url')`` and ``x[n]``. With the R4
element type table these compile, once, into :class:`Branch` es: a fixed sequence of
JSON keys and filters ending in one known FHIR type. Choice elements (``value[x]``)
expand at compile time into one branch per type (``valueQuantity``, ``valueString``,
...), so evaluation never inspects types at run time.

Anything outside the subset raises :class:`Unsupported`; callers fall back to a
general FHIRPath engine for those few expressions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# A FHIR type name, or "@Path.to.backbone" for a backbone element.
FhirType = str

QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity", "MoneyQuantity"}
)


class Unsupported(Exception):
    """The expression uses FHIRPath outside the compiled subset."""


# -- AST -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ident:
    name: str


@dataclass(frozen=True, slots=True)
class Child:
    base: Node
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    base: Node
    index: int


@dataclass(frozen=True, slots=True)
class AsType:
    base: Node
    type: str


@dataclass(frozen=True, slots=True)
class WhereResolveIs:
    base: Node
    type: str


@dataclass(frozen=True, slots=True)
class WhereEquals:
    base: Node
    field: str
    value: str


@dataclass(frozen=True, slots=True)
class ExtensionUrl:
    base: Node
    url: str


@dataclass(frozen=True, slots=True)
class Union:
    items: tuple[Node, ...]


Node = Ident | Child | Index | AsType | WhereResolveIs | WhereEquals | ExtensionUrl | Union


# -- parser ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+)|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<op>!=|[.()\[\]|=,]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise Unsupported(f"cannot tokenise {text[pos:]!r}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "id" and value.startswith("`"):
            value = value[1:-1]
        if kind == "str":
            value = value[1:-1].replace("\\'", "'")
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        i = self.pos + offset
        return self.toks[i] if i < len(self.toks) else ("eof", "")

    def take(self, kind: str, value: str | None = None) -> str:
        k, v = self.peek()
        if k != kind or (value is not None and v != value):
            raise Unsupported(f"expected {value or kind}, got {v or k!r}")
        self.pos += 1
        return v

    def parse(self) -> Node:
        node = self.union()
        if self.peek()[0] != "eof":
            raise Unsupported(f"unexpected {self.peek()[1]!r}")
        return node

    def union(self) -> Node:
        items = [self.typed()]
        while self.peek() == ("op", "|"):
            self.pos += 1
            items.append(self.typed())
        return items[0] if len(items) == 1 else Union(tuple(items))

    def typed(self) -> Node:
        node = self.path()
        k, v = self.peek()
        if k == "id" and v == "as":
            self.pos += 1
            return AsType(node, self.take("id"))
        if k == "id" and v in ("is", "and", "or", "xor", "implies"):
            raise Unsupported(f"operator {v!r}")
        if k == "op" and v in ("=", "!="):
            raise Unsupported(f"operator {v!r}")
        return node

    def path(self) -> Node:
        node: Node
        if self.peek() == ("op", "("):
            self.pos += 1
            node = self.union()
            self.take("op", ")")
        else:
            name = self.take("id")
            if self.peek() == ("op", "("):
                raise Unsupported(f"function {name}() at the root")
            node = Ident(name)
        while True:
            k, v = self.peek()
            if (k, v) == ("op", "."):
                self.pos += 1
                name = self.take("id")
                node = self.call(node, name) if self.peek() == ("op", "(") else Child(node, name)
            elif (k, v) == ("op", "["):
                self.pos += 1
                node = Index(node, int(self.take("num")))
                self.take("op", "]")
            else:
                return node

    def call(self, base: Node, name: str) -> Node:
        self.take("op", "(")
        if name in ("as", "ofType"):
            node: Node = AsType(base, self.take("id"))
        elif name == "extension":
            node = ExtensionUrl(base, self.take("str"))
        elif name == "where":
            node = self.where(base)
        else:
            raise Unsupported(f"function {name}()")
        self.take("op", ")")
        return node

    def where(self, base: Node) -> Node:
        k, v = self.peek()
        if (k, v) == ("id", "resolve") and self.peek(1) == ("op", "("):
            self.pos += 1
            self.take("op", "(")
            self.take("op", ")")
            self.take("id", "is")
            return WhereResolveIs(base, self.take("id"))
        if k == "id" and self.peek(1) == ("op", "=") and self.peek(2)[0] == "str":
            self.pos += 2
            return WhereEquals(base, v, self.take("str"))
        raise Unsupported("where() criterion")


def parse(text: str) -> Node:
    """Parse an expression of the compiled subset; raise :class:`Unsupported` otherwise."""
    return _Parser(text).parse()


def union_parts(text: str) -> list[str]:
    """Split a top-level ``a | b | (c as T)`` union into its parts (as source text)."""
    parts, depth, start, quoted = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def root_name(text: str) -> str:
    """The name an expression part starts from: ``(Observation.value as X)`` -> Observation."""
    m = re.match(r"[\s(]*([A-Za-z_][A-Za-z0-9_]*)", text)
    return m.group(1) if m else ""


# -- static compilation ------------------------------------------------------------

# Steps of a branch: ("key", json_key) | ("index", n) | ("reftype", Type)
#                   | ("eq", field, literal) | ("ext", url)
Step = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Branch:
    """One statically typed path: follow ``steps`` from the resource, get values of ``type``."""

    steps: tuple[Step, ...]
    type: FhirType
    repeats: bool = False  # some step may hold several values (known when cardinality is)
    choice: str | None = None  # the last key is one type of this choice element


class ElementTypes:
    """R4 element types, ``"Observation.value[x]" -> ("Quantity", ...)``; ``@path``: a backbone."""

    def __init__(
        self,
        table: Mapping[str, list[str] | tuple[str, ...]],
        repeating: Collection[str] = (),
    ) -> None:
        """``repeating``: element paths whose max cardinality is above 1."""
        self._table = table
        self._repeating = frozenset(repeating)
        self.used: set[str] = set()

    def repeats(self, context: FhirType, name: str) -> bool:
        base = context[1:] if context.startswith("@") else context
        if f"{base}.{name}" in self._table:
            return f"{base}.{name}" in self._repeating
        if f"{base}.{name}[x]" in self._table:
            return False  # a choice holds one value
        for parent in ("DomainResource", "Resource", "Element"):
            if f"{parent}.{name}" in self._table:
                return f"{parent}.{name}" in self._repeating
        return True

    def child(self, context: FhirType, name: str) -> list[tuple[str, FhirType]]:
        """(json key, type) pairs of element ``name`` under ``context``."""
        base = context[1:] if context.startswith("@") else context
        for key in (f"{base}.{name}", f"{base}.{name}[x]"):
            types = self._table.get(key)
            if types is None:
                continue
            self.used.add(key)
            if key.endswith("[x]"):
                return [(name + t[0].upper() + t[1:], t) for t in types]
            return [(name, types[0])]
        if base not in ("Resource", "DomainResource", "Element", "BackboneElement"):
            # Inherited elements (id, meta, extension) live on the abstract bases.
            for parent in ("DomainResource", "Resource", "Element"):
                if f"{parent}.{name}" in self._table:
                    return self.child(parent, name)
        raise Unsupported(f"unknown element {base}.{name}")


def compile_branches(
    node: Node, resource_type: str, types: ElementTypes, context: FhirType | None = None
) -> list[Branch]:
    """Compile ``node`` for resources of ``resource_type`` into typed branches.

    With ``context`` the expression is relative (a composite component): its first name
    is an element of that type, and the steps start from the context element.
    """
    return list(_compile(node, resource_type, types, context))


# FHIRPath system types (``value.as(DateTime)``) and the FHIR types they stand for.
_SYSTEM_TYPES = {
    "DateTime": ("dateTime", "instant"),
    "Date": ("date",),
    "Time": ("time",),
    "String": ("string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid"),
    "Boolean": ("boolean",),
    "Integer": ("integer", "positiveInt", "unsignedInt"),
    "Decimal": ("decimal",),
}


def _is_type(actual: FhirType, wanted: str) -> bool:
    if actual == wanted or actual in _SYSTEM_TYPES.get(wanted.removeprefix("System."), ()):
        return True
    if wanted == "Quantity":
        return actual in QUANTITY_TYPES
    return wanted in ("Resource", "DomainResource") and actual[:1].isupper() and actual != ""


def _compile(
    node: Node, rtype: str, types: ElementTypes, context: FhirType | None
) -> Iterator[Branch]:
    if isinstance(node, Ident):
        if context is not None:
            many = types.repeats(context, node.name)
            pairs = types.child(context, node.name)
            choice = node.name if pairs and pairs[0][0] != node.name else None
            for key, t in pairs:
                yield Branch((("key", key),), t, many, choice)
            return
        if node.name in (rtype, "Resource", "DomainResource"):
            yield Branch((), rtype)
            return
        if not node.name[:1].isupper():
            # A path relative to the resource ("name | alias" on InsurancePlan).
            many = types.repeats(rtype, node.name)
            pairs = types.child(rtype, node.name)
            choice = node.name if pairs and pairs[0][0] != node.name else None
            for key, t in pairs:
                yield Branch((("key", key),), t, many, choice)
            return
        raise Unsupported(f"path root {node.name} on {rtype}")
    if isinstance(node, Union):
        for item in node.items:
            yield from _compile(item, rtype, types, context)
        return
    for b in _compile(node.base, rtype, types, context):
        if isinstance(node, Child):
            many = b.repeats or types.repeats(b.type, node.name)
            pairs = types.child(b.type, node.name)
            choice = f"{b.steps}.{node.name}" if pairs and pairs[0][0] != node.name else None
            for key, t in pairs:
                yield Branch((*b.steps, ("key", key)), t, many, choice)
        elif isinstance(node, AsType):
            if _is_type(b.type, node.type):
                yield b
        elif isinstance(node, Index):
            yield Branch((*b.steps, ("index", node.index)), b.type, b.repeats)
        elif isinstance(node, WhereResolveIs):
            if b.type not in ("Reference", "canonical"):
                raise Unsupported(f"resolve() on {b.type}")
            yield Branch((*b.steps, ("reftype", node.type)), b.type, b.repeats, b.choice)
        elif isinstance(node, WhereEquals):
            types.child(b.type, node.field)  # the field must exist
            yield Branch((*b.steps, ("eq", node.field, node.value)), b.type, b.repeats, b.choice)
        else:
            yield Branch((*b.steps, ("ext", node.url)), "Extension", True)


# -- evaluation --------------------------------------------------------------------

Getter = Callable[[Mapping[str, Any]], list[Any]]


def reference_type(ref: Mapping[str, Any]) -> str | None:
    """The resource type a Reference points to, from its ``reference`` or ``type``."""
    target = ref.get("reference")
    if isinstance(target, str):
        parts = target.split("/")
        if len(parts) >= 2:
            if len(parts) >= 4 and parts[-2] == "_history":
                return parts[-4]
            return parts[-2]
    t = ref.get("type")
    return t if isinstance(t, str) else None


def getter(steps: tuple[Step, ...]) -> Getter:
    """A function returning the values reached by ``steps`` from a resource dict."""
    if len(steps) == 1 and steps[0][0] == "key":
        key = steps[0][1]

        def one(resource: Mapping[str, Any]) -> list[Any]:
            v = resource.get(key)
            if v is None:
                return []
            return v if v.__class__ is list else [v]

        return one
    funcs = [_step(s) for s in steps]

    def many(resource: Mapping[str, Any]) -> list[Any]:
        values: list[Any] = [resource]
        for f in funcs:
            values = f(values)
            if not values:
                return values
        return values

    return many


def _step(step: Step) -> Callable[[list[Any]], list[Any]]:
    kind = step[0]
    if kind == "key":
        key = step[1]

        def child(values: list[Any]) -> list[Any]:
            out: list[Any] = []
            for v in values:
                if v.__class__ is dict:
                    x = v.get(key)
                    if x is None:
                        continue
                    if x.__class__ is list:
                        out.extend(x)
                    else:
                        out.append(x)
            return out

        return child
    if kind == "index":
        n = step[1]
        return lambda values: values[n : n + 1]
    if kind == "reftype":
        wanted = step[1]
        return lambda values: [
            v for v in values if v.__class__ is dict and reference_type(v) == wanted
        ]
    if kind == "eq":
        field, literal = step[1], step[2]
        return lambda values: [v for v in values if v.__class__ is dict and v.get(field) == literal]
    if kind == "ext":
        url = step[1]
        return lambda values: [
            e
            for v in values
            if v.__class__ is dict
            for e in v.get("extension", ())
            if e.__class__ is dict and e.get("url") == url
        ]
    raise Unsupported(f"step {kind}")
