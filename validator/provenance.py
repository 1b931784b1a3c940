"""Where a rendered field came from: the value file and line that set it, found by value.

Helm's output keeps no trace of the values it used, so a finding on a rendered object points at
the template with no line. For a scalar field, the value file that set it last usually holds the
same scalar under the same key (``resources.limits.memory: 128Mi`` renders as ``memory: 128Mi``):
this module indexes every scalar of the app's layered values (chart values.yaml, then each value
file in order, a later file replacing an earlier one at the same path) by (key, value), and a
finding whose field matches exactly one value path points at that line.

Limits (documented in docs/accuracy.md): a field the template computes or rewrites (``image:
repo:tag`` from two values, a quoted number, a URL built from parts) has no match and keeps the
template location; a value that appears under the same key at two paths is ambiguous and not
used; a finding about a missing field (a probe removed with ``readinessProbe: null``) has no
value to match. Helm's ``--set`` parameters and ``helm.values`` are not indexed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import walk
from .yamlio import YamlProblem, decode, load_all


class ValueIndex:
    """(key, scalar) -> value paths, and where each value path was set last."""

    def __init__(self) -> None:
        self._setters: dict[tuple, tuple[str, int | None]] = {}   # value path -> last setter
        self._final: dict[tuple, str] = {}                         # value path -> last value
        self._default: dict[tuple, str] = {}                       # value path -> chart default
        self._by_leaf: dict[tuple[str, str], set[tuple]] = {}

    @classmethod
    def of(cls, repo: Path, chart: str, value_files: list[str]) -> "ValueIndex":
        index = cls()
        defaults = f"{chart}/values.yaml"
        for rel in [defaults, *value_files]:
            try:
                docs = list(load_all(decode((repo / rel).read_bytes())))
            except (OSError, YamlProblem):
                continue  # reported by the values stage
            doc = docs[0] if docs else None
            if doc is None or not isinstance(doc.data, dict):
                continue
            for path, value in walk(doc.data):
                if path and isinstance(path[-1], str) and (_scalar(value) or value is None):
                    index._setters[path] = (rel, doc.line_of(path))
                    index._final[path] = _text(value)
                    if rel == defaults:
                        index._default[path] = _text(value)
                    index._by_leaf.setdefault((path[-1], _text(value)), set()).add(path)
        return index

    def locate(self, obj: dict, paths: tuple[tuple, ...]) -> tuple[str, int | None] | None:
        """Where the field at the first of ``paths`` (or a related one) of a rendered object was
        set: a value path with the same key and the same scalar (``null`` for a missing field),
        unique, and still holding it after layering. A value an override changed from the chart's
        default is preferred: that is the edit that caused the problem."""
        found = []
        for path in paths:
            vpath = self._match(obj, path)
            if vpath is not None:
                found.append(vpath)
        changed = [v for v in found if self._default.get(v) != self._final.get(v)]
        best = (changed or found or [None])[0]
        return self._setters[best] if best is not None else None

    def _match(self, obj: dict, path: tuple) -> tuple | None:
        keys = [p for p in path if isinstance(p, str)]
        if not keys or path[-1] != keys[-1]:
            return None
        value = _get(obj, path)
        if value is not None and not _scalar(value):
            return None
        text = _text(value)
        paths = [p for p in self._by_leaf.get((keys[-1], text), set()) if self._final.get(p) == text]
        return paths[0] if len(paths) == 1 else None


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""


def _text(value: Any) -> str:
    return "null" if value is None else str(value)


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and 0 <= p < len(obj):
            obj = obj[p]
        else:
            return None
    return obj
