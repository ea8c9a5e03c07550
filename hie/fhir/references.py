"""References inside resources: find them and rewrite them (transactions, imports)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def iter_references(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Yield (element path, reference string) for every Reference.reference under node."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            yield f"{path}.reference", ref
        for key, value in node.items():
            if key == "reference":
                continue
            if isinstance(value, dict | list):
                yield from iter_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from iter_references(item, f"{path}[{index}]")


def rewrite_references(
    node: Any, replace: Callable[[str, str], str | None], path: str = ""
) -> None:
    """Replace in place every Reference.reference for which ``replace(ref, path)`` gives a value."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            new = replace(ref, f"{path}.reference")
            if new is not None:
                node["reference"] = new
        for key, value in node.items():
            if isinstance(value, dict | list) and key != "reference":
                rewrite_references(value, replace, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            rewrite_references(item, replace, f"{path}[{index}]")
