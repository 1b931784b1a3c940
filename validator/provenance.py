"""Where a finding points: one function, ``where``, for every finding on an object.

Order (the first that answers wins):

1. **A file we read** (an Application, an AppProject, a manifest given with ``--manifests``, a
   kustomize input): the line of the field, from the YAML parser's positions.
2. **A rendered object, field set by a value** (``ValueIndex``): helm's output keeps no trace of
   the values it used, but the value file that set a scalar field last usually holds the same
   scalar under the same key (``resources.limits.memory: 128Mi`` renders as ``memory: 128Mi``).
   Every scalar of the app's layered values (chart values.yaml, then each value file in order, a
   later file replacing an earlier one at the same path) is indexed by (key, value); a field that
   matches exactly one value path points at the line that set it. A second location, "rendered
   by", names the template and the line that reads that value (``.Values.resources``).
3. **An app an app-of-apps rendered** (``Manifest.hints``, the parent's value files): the first
   ``key: value`` line there (``appsource.find_setting``), again with the template as the second
   location.
4. **Else the template** (the ``# Source:`` file of the object), at the line that spells the field
   out (``template_line``): a prefixed key (``argocd.argoproj.io/sync-wave:``) or a literal string
   of 8 characters or more; no line when in doubt.

A rule may name other places the same problem can be fixed (``Problem.also``: the Service port a
URL names, the declared key of an external Secret). The policy stage points at the first place an
override set (a value that differs from the chart's default, or a cluster fact) and lists the
others as related locations: the edit that caused a mismatch is what the user changed, not the
side that stayed as the chart ships it.

Limits (also in docs/accuracy.md): a field the template computes or rewrites (``image:
repo:tag`` from two values, a quoted number, a URL built from parts) has no match and keeps the
template location; a value that appears under the same key at two paths is ambiguous and not used;
list items (``secret.keys``) are not indexed; a finding about a missing field (a probe removed with
``readinessProbe: null``) matches only through the ``null`` that removed it. Helm's ``--set``
parameters and ``helm.values`` are not indexed. The index is built on the first finding that needs
it, never on a clean run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .findings import RENDERED_BY, Location
from .model import MISSING, Manifest, at_path, dig, walk
from .record import Frozen
from .yamlio import YamlProblem, decode, load_all


class Place(Frozen):
    """Where ``where`` points: file and line, the related locations, and whether an override set it."""
    file: str | None
    line: int | None
    related: tuple[Location, ...]
    overridden: bool

    def __init__(self, file: str | None, line: int | None, related: tuple[Location, ...] = (),
                 overridden: bool = False) -> None:
        self._assign(file, line, related, overridden)


def where(m: Manifest, path: tuple, repo: Path | None = None, related: tuple = ()) -> Place:
    """Where a finding about the field at ``path`` of ``m`` (or one of the ``related`` paths) points,
    in the order of this module's docstring."""
    from .appsource import find_setting  # pulls in yaml and the renderers: only on a finding
    line = m.line_of(path) if path else m.line
    if line is not None or not path or m.line is not None or repo is None:
        return Place(m.file, line)
    setting = m.values.setting(m.doc, (path, *related)) if m.values is not None else None
    if setting is None and m.values is not None and isinstance(path[-1], str):
        vpath = template_reference(repo, m.file, path[-1])
        setting = m.values.setter_of(vpath, dig(m.doc, *path)) if vpath else None
    if setting is not None:
        file, line, vpath, overridden = setting
        return Place(file, line, _rendered_by(repo, m.file, vpath), overridden)
    found = find_setting(repo, m.hints, path[-1], dig(m.doc, *path)) if m.hints else None
    if found:
        return Place(found[0], found[1], _rendered_by(repo, m.file, None), True)
    return Place(m.file, template_line(repo, m.file, path, dig(m.doc, *path), obj=m.doc))


def _rendered_by(repo: Path, template: str | None, vpath: tuple | None) -> tuple[Location, ...]:
    if not template:
        return ()
    return (Location(template, values_line(repo, template, vpath) if vpath else None, RENDERED_BY),)


def _lines(repo: Path, file: str | None) -> list[str]:
    try:
        return (repo / file).read_text(encoding="utf-8").splitlines() if file else []
    except (OSError, UnicodeDecodeError):
        return []


def values_line(repo: Path, template: str, vpath: tuple) -> int | None:
    """The first template line that reads the value at ``vpath`` (``.Values.resources.limits``),
    or its nearest parent that the template reads (``toYaml .Values.resources``)."""
    keys = [k for k in vpath if isinstance(k, str)]
    lines = _lines(repo, template)
    for n in range(len(keys), 0, -1):
        pattern = re.compile(r"\.Values\." + re.escape(".".join(keys[:n])) + r"(?![\w-])")
        hit = next((i for i, text in enumerate(lines, 1) if pattern.search(text)), None)
        if hit is not None:
            return hit
    return None


_REFERENCE = r"^\s*(?:-\s*)?[\"']?{key}[\"']?\s*:\s*\{{\{{-?\s*\$?\.Values\.([\w.-]+)\s*(?:\|\s*quote\s*)?-?\}}\}}\s*(?:#.*)?$"


def template_reference(repo: Path, template: str | None, key: str) -> tuple | None:
    """The value path a template writes under ``key`` when exactly one of its lines does so
    directly (``imagePullPolicy: {{ .Values.image.pullPolicy }}``): a field whose key differs
    from the value's."""
    pattern = re.compile(_REFERENCE.format(key=re.escape(key)))
    found = {m.group(1) for line in _lines(repo, template) if (m := pattern.match(line))}
    return tuple(found.pop().split(".")) if len(found) == 1 else None


_GUARD = re.compile(r"^\s*\{\{-?\s*(?:with|if)\b")


def _missing_line(lines: list[str], path: tuple, obj: dict | None) -> int | None:
    """For a field the rendered object lacks: the template line that would write its first missing
    key (``resources:``), once in the file; or the ``with``/``if`` right above it that left it out."""
    if obj is None:
        return None
    n = 0
    while n < len(path) and at_path(obj, path[: n + 1], MISSING) is not MISSING:
        n += 1
    if n == len(path) or not isinstance(path[n], str):
        return None
    pattern = re.compile(r"^\s*(?:-\s*)?" + re.escape(path[n]) + r":\s*$")
    hits = [i for i, line in enumerate(lines) if pattern.match(line)]
    if len(hits) != 1:
        return None
    above = next((i for i in range(hits[0] - 1, -1, -1) if lines[i].strip()), None)
    return above + 1 if above is not None and _GUARD.match(lines[above]) else hits[0] + 1


def template_line(repo: Path, file: str | None, path: tuple, value: Any = None, any_key: bool = False,
                  obj: dict | None = None) -> int | None:
    """The template line that writes the field at ``path`` of a rendered object, when the template
    spells it out: ``key: value`` once in the file, a prefixed key (``argocd.argoproj.io/sync-wave:``;
    any key with ``any_key``), or else a literal string value of 8 characters or more. For a field
    ``obj`` lacks: the line of its first missing key, or the ``with``/``if`` guard above it. None
    when in doubt."""
    keys = [p for p in path if isinstance(p, str)]
    key = keys[-1] if keys and isinstance(path[-1], str) and (any_key or "/" in keys[-1]) else None
    lines = _lines(repo, file)
    if keys and isinstance(path[-1], str) and _scalar(value):  # ``targetPort: http``, once in the file
        literal = re.compile(r"^\s*(?:-\s*)?" + re.escape(keys[-1]) + r"\s*:\s*([\"']?)" + re.escape(_text(value))
                             + r"\1\s*(?:#.*)?$")
        hits = [n for n, line in enumerate(lines, 1) if literal.match(line)]
        if len(hits) == 1:
            return hits[0]
    if value is None and path:
        missing = _missing_line(lines, path, obj)
        if missing is not None:
            return missing
    if key is not None:
        pattern = re.compile(r"^\s*(?:-\s*)?[\"']?" + re.escape(key) + r"[\"']?\s*:")
        hit = pattern.match
    elif isinstance(value, str) and len(value) >= 8 and "\n" not in value:
        def hit(line: str) -> bool:
            return value in line
    else:
        return None
    return next((n for n, line in enumerate(lines, 1) if hit(line)), None)


class ValueIndex:
    """(key, scalar) -> value paths, and where each value path was set last. Built from the files
    on first use: a run without findings on rendered objects never reads them."""

    def __init__(self) -> None:
        self._setters: dict[tuple, tuple[str, int | None]] = {}   # value path -> last setter
        self._final: dict[tuple, str] = {}                         # value path -> last value
        self._default: dict[tuple, str] = {}                       # value path -> chart default
        self._by_leaf: dict[tuple[str, str], set[tuple]] = {}
        self._source: tuple[Path, str, tuple[str, ...]] | None = None
        self._read: dict[str, list] = {}

    @classmethod
    def of(cls, repo: Path, chart: str, value_files: list[str], read: dict | None = None) -> "ValueIndex":
        """``read``: value file -> its scalars, shared by the indexes of one run (a chart's
        defaults are every one of its apps' first file)."""
        index = cls()
        index._source = (repo, chart, tuple(value_files))
        index._read = {} if read is None else read
        return index

    def _scalars(self, repo: Path, rel: str) -> list[tuple[tuple, int | None, str]]:
        """(value path, line, value as text) of every scalar a value file sets, read once."""
        if rel not in self._read:
            out = []
            try:
                docs = list(load_all(decode((repo / rel).read_bytes())))
            except (OSError, YamlProblem):
                docs = []  # reported by the values stage
            doc = docs[0] if docs else None
            if doc is not None and isinstance(doc.data, dict):
                out = [(path, doc.line_of(path), _text(value)) for path, value in walk(doc.data)
                       if path and isinstance(path[-1], str) and (_scalar(value) or value is None)]
            self._read[rel] = out
        return self._read[rel]

    def _build(self) -> None:
        if self._source is None:
            return
        repo, chart, value_files = self._source
        self._source = None
        index = self
        defaults = f"{chart}/values.yaml"
        for rel in [defaults, *value_files]:
            for path, line, text in self._scalars(repo, rel):
                index._setters[path] = (rel, line)
                index._final[path] = text
                if rel == defaults:
                    index._default[path] = text
                index._by_leaf.setdefault((path[-1], text), set()).add(path)

    def locate(self, obj: dict, paths: tuple[tuple, ...]) -> tuple[str, int | None] | None:
        """Where the field at the first of ``paths`` (or a related one) of a rendered object was
        set (see ``setting``), as (file, line)."""
        found = self.setting(obj, paths)
        return found[:2] if found is not None else None

    def setting(self, obj: dict, paths: tuple[tuple, ...]) -> tuple[str, int | None, tuple, bool] | None:
        """(file, line, value path, overridden) of the value that set the field at the first of
        ``paths`` (or a related one): a value path with the same key and the same scalar
        (``null`` for a missing field), unique, and still holding it after layering. A value an
        override changed from the chart's default is preferred (``overridden``): that is the edit
        that caused the problem."""
        self._build()
        found = []
        for path in paths:
            vpath = self._match(obj, path)
            if vpath is not None:
                found.append(vpath)
        changed = [v for v in found if self._default.get(v) != self._final.get(v)]
        best = (changed or found or [None])[0]
        return (*self._setters[best], best, bool(changed)) if best is not None else None

    def setter_of(self, vpath: tuple, value: Any) -> tuple[str, int | None, tuple, bool] | None:
        """Like ``setting``, for a value path the template names (``port: {{ .Values.service.port }}``),
        when the value there is the rendered one."""
        self._build()
        if vpath not in self._setters or self._final.get(vpath) != _text(value):
            return None
        return (*self._setters[vpath], vpath, self._default.get(vpath) != self._final.get(vpath))

    def _match(self, obj: dict, path: tuple) -> tuple | None:
        keys = [p for p in path if isinstance(p, str)]
        if not keys or path[-1] != keys[-1]:
            return None
        value = at_path(obj, path)
        if value is not None and not _scalar(value):
            return None
        text = _text(value)
        paths = [p for p in self._by_leaf.get((keys[-1], text), set()) if self._final.get(p) == text]
        return paths[0] if len(paths) == 1 else None


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and value != ""


def _text(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
