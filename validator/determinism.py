"""Render twice, compare: a chart must render the same objects every time.

Argo CD renders a chart on every refresh and diffs it against the cluster, so a template using
``randAlphaNum``, ``uuidv4``, ``genPrivateKey`` or ``now`` never shows Synced and, with self-heal,
rewrites its objects (and restarts their pods) on every reconcile. Helm has no seed and no clock
flag, but it needs none: two separate ``helm template`` runs draw different random values and read
a different time. So each render that is not known to be deterministic runs helm a second time,
at the same time as the first (a thread of its own, no cache), and compares the two parsed outputs
object by object; a difference is an ``argocd/non-deterministic-render`` finding naming the object,
the field and the template.

Cost: one extra helm run per app on a cache miss, run concurrently with the first, so a cold run
takes about as long as before on an idle machine. A render that matched its second run is recorded
in the cache directory (``<render key>.deterministic``), so a cache hit of proven output costs
nothing: the warm and pre-commit paths run no extra helm. Without a cache (``--no-cache``) every
app is rendered twice.

Limit: a template that only formats the time coarsely (``now | date "2006-01-02"``) renders the
same twice within the same day; only its day-to-day drift escapes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

from . import render
from .findings import Finding, Severity
from .model import Manifest
from .policy import template_line
from .rendercache import RenderCache

RULE = "argocd/non-deterministic-render"
MAX_PATHS = 3  # differing fields named per object


PROOF_SUFFIX = ".deterministic"


def render_checked(repo: Path, req: render.RenderRequest, helm: str, cache: RenderCache | None,
                   timeout: float) -> render.Rendered:
    """``render.render``, plus the determinism check: a second, uncached helm run alongside the
    first, unless the output comes from the cache and was already shown to be deterministic."""
    key = cache.key(repo, req, helm) if cache else None
    proof = cache.directory / f"{key}{PROOF_SUFFIX}" if cache and key else None
    if cache and key and cache.get(key) is not None:
        first = render.render(repo, req, helm, cache, timeout)
        if proof is not None and cache.get_file(proof) is not None:
            return first
        text2, err2 = render.run_helm(repo, req, helm, timeout)  # a cache entry nobody checked yet
    else:
        with ThreadPoolExecutor(max_workers=1) as second_pool:
            second = second_pool.submit(render.run_helm, repo, req, helm, timeout)
            first = render.render(repo, req, helm, cache, timeout)
            text2, err2 = second.result()
    if not first.manifests and first.findings:
        return first  # the render failed: that is the finding
    findings = compare(repo, req, first.manifests, text2, err2)
    if not findings and cache and proof is not None:
        cache.put_file(proof, "")
    first.findings += findings
    return first


def compare(repo: Path, req: render.RenderRequest, first: list[Manifest], text2: str | None,
            err2: str | None) -> list[Finding]:
    """Findings for every object that differs between two renders of ``req``."""
    origin = req.origin
    if err2 is not None or text2 is None:
        return [Finding(RULE, Severity.ERROR, f"the chart rendered once, then failed on a second run: {err2}",
                        origin.file if origin else req.chart, origin.line if origin else None,
                        origin.ref if origin else None, req.app)]
    second, _ = render.parse_rendered(text2, req)
    a, b = _index(first), _index(second)
    findings: list[Finding] = []
    for key in sorted(a.keys() | b.keys(), key=str):
        if key in a and key in b:
            paths = list(_differences(a[key].doc, b[key].doc))
            if not paths:
                continue
            m = a[key]
            shown = "; ".join(f"{_dotted(p)}: {_short(x)} then {_short(y)}" for p, x, y in paths[:MAX_PATHS])
            more = f" (and {len(paths) - MAX_PATHS} more fields)" if len(paths) > MAX_PATHS else ""
            msg = (f"{m.kind} {m.name} renders differently on every run ({shown}{more}): randomness or the time "
                   "in a template, so Argo CD never shows it Synced and self-heal rewrites it on every reconcile")
            findings.append(Finding(RULE, Severity.ERROR, msg, m.file,
                                    template_line(repo, m.file, paths[0][0], paths[0][1], any_key=True),
                                    m.ref, req.app))
        else:
            m = a.get(key) or b[key]
            findings.append(Finding(RULE, Severity.ERROR,
                                    f"{m.kind} {m.name} is rendered by one run and not by the next (its name "
                                    "or its presence is random): Argo CD would create and prune it on every sync",
                                    m.file, None, m.ref, req.app))
    return findings


def _index(manifests: list[Manifest]) -> dict[tuple, Manifest]:
    out: dict[tuple, Manifest] = {}
    for m in manifests:
        key = (m.file, m.api_version, m.kind, m.namespace, m.name)
        n = 0
        while key + (n,) in out:
            n += 1
        out[key + (n,)] = m
    return out


def _differences(x: Any, y: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any, Any]]:
    if isinstance(x, dict) and isinstance(y, dict):
        for k in sorted(x.keys() | y.keys(), key=str):
            yield from _differences(x.get(k), y.get(k), path + (k,))
    elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
        for i, (u, v) in enumerate(zip(x, y)):
            yield from _differences(u, v, path + (i,))
    elif x != y:
        yield path, x, y


def _dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
