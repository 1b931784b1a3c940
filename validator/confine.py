"""Inside the repository only: nothing the validator or helm reads may lead out of the repo.

Argo CD refuses a repository whose app path holds a symlink that leaves it ("repository contains
out-of-bounds symlinks"); symlinks that stay inside are fine. Helm follows symlinks, so a chart is
checked *before* helm runs, and the validator reads no repo file that resolves outside. A chart's
``values.schema.json`` resolves ``$ref`` only to files inside the chart: never over the network,
never ``file://`` anywhere else.

Findings name the link, never its target: the target is outside the repo and not ours to print.
"""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import urldefrag

if TYPE_CHECKING:  # imported where used: a run whose values come from the result cache needs none of them
    import referencing

from .findings import Finding, Severity
from .realpaths import RealPaths
from .render import inside

RULE = "argocd/out-of-bounds-symlink"
#: Files and directories looked at under one chart or directory source (a hostile tree is bounded
#: too); a source with more is not rendered. ``.git`` directories are not looked into.
MAX_ENTRIES = 100_000


def escapes(repo: Path, rel: str) -> bool:
    """Whether ``repo/rel`` resolves (through a symlink on the way) to somewhere outside the repo."""
    return not inside(repo, repo / rel)


def links_out(repo: Path, rel_dir: str) -> list[str]:
    """Repo-relative paths of the symlinks under ``rel_dir`` (itself included) that leave the repo.
    Symlinked directories that stay inside are followed, as helm follows them; each real directory
    is visited once, so a symlink loop ends."""
    found: list[str] = []
    if escapes(repo, rel_dir):
        return [rel_dir]
    seen: set[Path] = set()
    stack = [(repo / rel_dir, rel_dir)]
    entries = 0
    while stack:
        real, shown = stack.pop()
        key = real.resolve()
        if key in seen:
            continue
        seen.add(key)
        try:
            children = sorted(os.scandir(real), key=lambda e: e.name)
        except OSError:
            continue
        for entry in children:
            entries += 1
            if entries > MAX_ENTRIES:
                return found + [f"{rel_dir} (more than {MAX_ENTRIES} files to search for symlinks)"]
            rel = posixpath.join(shown, entry.name)
            if entry.name == ".git":
                continue
            if entry.is_symlink():
                if escapes(repo, rel) or not inside(repo, Path(entry.path)):
                    found.append(rel)
                    continue
                if Path(entry.path).is_dir():
                    stack.append((Path(entry.path), rel))
            elif entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel))
    return sorted(found)


def symlink_finding(rel: str, what: str, file: str | None = None, line: int | None = None,
                    obj=None, app: str | None = None) -> Finding:
    return Finding(RULE, Severity.ERROR,
                   f"{what} {rel!r} is a symlink that leaves the repository; not read (Argo CD refuses "
                   "it too: \"repository contains out-of-bounds symlinks\"). Copy the file into the repo "
                   "or point the link inside it",
                   file if file is not None else rel, line, obj, app)


# --- $ref in a chart's values.schema.json ------------------------------------------------------

class RefRefused(Exception):
    """A ``$ref`` that would leave the chart (network, ``file://``, a path outside the chart dir)."""


def chart_registry(repo: Path, chart: str) -> referencing.Registry:
    """A registry that retrieves a ``$ref`` only as a JSON file inside the chart directory."""
    import referencing
    from referencing.jsonschema import DRAFT7
    base = repo / chart

    def retrieve(uri: str) -> referencing.Resource:
        if not uri or ":" in uri.split("/", 1)[0]:
            raise RefRefused(f"{uri!r} is not a file inside the chart (no network, no file:// outside the chart)")
        rel = posixpath.normpath(posixpath.join(chart, uri))
        if rel.startswith("..") or not (rel + "/").startswith(chart.rstrip("/") + "/") or not inside(base, repo / rel):
            raise RefRefused(f"{uri!r} leaves the chart directory {chart}")
        try:
            contents = json.loads((repo / rel).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RefRefused(f"{uri!r} cannot be read as JSON inside the chart: {getattr(e, 'strerror', None) or e}") from None
        return referencing.Resource.from_contents(contents, default_specification=DRAFT7)

    return referencing.Registry(retrieve=retrieve)  # type: ignore[call-arg]


def _refs(schema: Any) -> Iterator[str]:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("$ref", "$dynamicRef") and isinstance(v, str):
                    yield v
                else:
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)


def unresolvable_refs(schema: Any, registry: referencing.Registry) -> list[tuple[str, str]]:
    """(ref, why) for every ``$ref`` of ``schema`` that does not resolve inside the chart. Checked
    eagerly, for every ref (not only those the values reach), because helm resolves them all."""
    import referencing.exceptions
    from jsonschema_specifications import REGISTRY as SPECIFICATIONS
    from referencing.jsonschema import DRAFT7
    resolver = SPECIFICATIONS.combine(registry).with_resource(
        "", referencing.Resource.from_contents(schema, default_specification=DRAFT7)).resolver()
    out = []
    for ref in dict.fromkeys(_refs(schema)):
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as e:
            out.append((ref, ref_problem(e)))
    return out


def ref_problem(error: BaseException) -> str:
    """Why a ``$ref`` did not resolve, in words."""
    import referencing.exceptions
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, RefRefused):
            return str(cause)
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, referencing.exceptions.PointerToNowhere):
        return f"the pointer {error.ref!r} points at nothing in the schema"
    ref = getattr(error, "ref", "")
    return f"{urldefrag(str(ref)).url or str(ref)!r} does not resolve ({type(error).__name__})"


def line_of_ref(text: str, ref: str) -> int | None:
    """The line of ``"$ref": "<ref>"`` in a schema's text."""
    spelled = json.dumps(ref)
    for n, line in enumerate(text.splitlines(), 1):
        if "$ref" in line and spelled in line:
            return n
    return None


class Within:
    """``inside`` for many paths of one repo, as one run asks: the repo and each folder are
    resolved once, and a path itself only when it is a symlink (``realpaths.RealPaths``)."""

    def __init__(self, repo: Path):
        self.repo, self.root = str(repo), os.path.realpath(repo)
        self._prefix = self.root if self.root.endswith(os.sep) else self.root + os.sep
        self._real = RealPaths()
        self._seen: dict[str, bool] = {}

    def __call__(self, rel: str) -> bool:
        """Whether ``repo/rel`` resolves inside the repo."""
        hit = self._seen.get(rel)
        if hit is None:
            real = self._real(os.path.join(self.repo, rel))
            hit = self._seen[rel] = real == self.root or real.startswith(self._prefix)
        return hit
