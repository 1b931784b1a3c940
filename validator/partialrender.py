"""Partial renders: after a values error, render the app with what is valid, so one typo in a value
file does not hide the app's other findings.

``schema.check_values`` reports the error, and it stays an error (exit 1). ``valid_part`` then
builds the values helm would have merged (the chart's values.yaml, each value file in order, then
``helm.values``) without what was refused: an override key the chart does not know is dropped, and a
value the chart's values.schema.json refuses falls back to the chart's default (or is dropped when
the chart has none). The result goes to helm as one values document, with ``null`` where an override
deleted a default, so helm merges it back to exactly these values; ``--set`` parameters stay
parameters. The objects rendered that way are checked like any others.

Not attempted (the app stays unrendered, and references into it are reported as not checked):
a value file that cannot be read or parsed, a values.schema.json that cannot be used, a chart
default that the schema refuses itself, or still refused after ``MAX_ROUNDS`` rounds. A render
that helm refuses even with the valid part is not reported: the values error comes first.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from . import schema
from .model import MISSING, at_path
from .record import replace
from .render import RenderRequest
from .yamlio import YamlProblem, load_all, yaml

#: Rounds of "validate, fall back at the refused paths": each round fixes at least one path.
MAX_ROUNDS = 10


def valid_part(repo: Path, req: RenderRequest) -> RenderRequest | None:
    """A request rendering the chart with the valid part of ``req``'s overrides, or None."""
    chart_values = _read(repo, f"{req.chart}/values.yaml")
    if chart_values is None:
        return None
    values_schema = None
    schema_file = repo / req.chart / "values.schema.json"
    if schema_file.is_file():
        try:
            text = schema_file.read_text(encoding="utf-8")
            values_schema = json.loads(text)
            validator, bad_refs, _ = schema._values_validator(repo, req.chart, text)
        except Exception:  # noqa: BLE001 - a schema check_values could not use: no partial render
            return None
        if bad_refs or validator is None:
            return None
    layers = []
    for rel in req.value_files:
        data = _read(repo, rel)
        if data is None:
            return None
        layers.append(data)
    if req.values_yaml:
        try:
            extra = next(iter(load_all(req.values_yaml)), None)
        except YamlProblem:
            return None
        layers.append(extra.data if extra and isinstance(extra.data, dict) else {})
    merged: Any = chart_values
    for data in layers:
        data = copy.deepcopy(data)
        for path, _ in schema.unknown_paths(data, chart_values, values_schema):
            _drop(data, path)
        merged = schema._merge(merged, data)
    if values_schema is not None:
        merged = _fall_back(merged, chart_values, validator)
        if merged is None:
            return None
    return replace(req, value_files=[], values_yaml=yaml.safe_dump(_as_override(chart_values, merged), sort_keys=False))


def _read(repo: Path, rel: str) -> dict | None:
    """The first document of a value file as a mapping ({} when empty or absent); None when it cannot be used."""
    if not (repo / rel).is_file():
        return {}
    doc, problems = schema._layer(repo, rel)
    if problems:
        return None
    data = doc.data if doc is not None else None
    return data if isinstance(data, dict) else {} if data is None else None


def _fall_back(values: dict, chart: dict, validator: Any) -> dict | None:
    """``values`` with each path the schema refuses set back to the chart's default (dropped when
    the chart has none); None when that does not converge."""
    values = copy.deepcopy(values)
    for _ in range(MAX_ROUNDS):
        errors = list(validator.iter_errors(values))
        if not errors:
            return values
        changed = False
        for err in errors:
            path = tuple(err.absolute_path)
            if not path:
                return None  # the document as a whole: nothing smaller to drop
            default = at_path(chart, path, MISSING)
            if at_path(values, path, MISSING) == default:
                return None  # the chart's own default is refused
            changed |= _set(values, path, copy.deepcopy(default)) if default is not MISSING else _drop(values, path)
        if not changed:
            return None
    return None


def _set(data: Any, path: tuple, value: Any) -> bool:
    parent = at_path(data, path[:-1], MISSING)
    if isinstance(parent, (dict, list)):
        parent[path[-1]] = value
        return True
    return False


def _drop(data: Any, path: tuple) -> bool:
    parent = at_path(data, path[:-1], MISSING)
    if isinstance(parent, dict) and path[-1] in parent:
        del parent[path[-1]]
        return True
    if isinstance(parent, list) and isinstance(path[-1], int) and 0 <= path[-1] < len(parent):
        del parent[path[-1]]
        return True
    return False


def _as_override(chart: Any, values: Any) -> Any:
    """The document that helm merges onto ``chart`` to give ``values``: ``null`` for a default the
    values no longer have."""
    if not (isinstance(chart, dict) and isinstance(values, dict)):
        return values
    out = {k: _as_override(chart.get(k), v) if k in chart else v for k, v in values.items()}
    out.update({k: None for k in chart if k not in values})
    return out
