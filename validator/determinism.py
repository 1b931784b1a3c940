"""Render twice, compare: a chart must render the same objects every time.

Argo CD renders a chart on every refresh and diffs it against the cluster, so a template using
``randAlphaNum``, ``uuidv4``, ``genPrivateKey`` or ``now`` never shows Synced and, with self-heal,
rewrites its objects (and restarts their pods) on every reconcile. Helm has no seed and no clock
flag, but it needs none: two separate ``helm template`` runs draw different random values and read
a different time. So each render that is not known to be deterministic runs helm a second time,
at the same time as the first (a thread of its own, no cache), and compares the two parsed outputs
object by object; a difference is an ``argocd/non-deterministic-render`` finding naming the object,
the field and the template.

When a second run is needed: only when a static test cannot rule a difference out
(``may_vary``). A template's output can differ between two runs of the same input only through a
function that reads randomness, the clock, the network or the cluster, or iterates a Go map in
its random order: ``VARYING`` lists them, taken from the function tables of the pinned helm
(v4.2.1, ``pkg/engine/funcs.go`` and ``engine.go``: sprig's map minus ``env``/``expandenv``, plus
``include``, ``tpl``, ``required``, ``fail``, ``lookup``, ``getHostByName``) and sprig v3.3.0
(``functions.go``; ``nonhermeticFunctions`` there names the time, random, OS and network ones, to
which we add what that list misses: ``randInt``, ``shuffle``, ``keys``/``values`` (map order),
``ago``/``durationRound`` (time since), the key, certificate and bcrypt generators and
``encryptAES`` (random salt or IV), ``lookup``). Everything else in those tables is a pure
function of its arguments, and Go's ``range`` over a map and ``printf`` of a map sort the keys.
A function can only be called inside a template action (``{{ ... }}``) of a file helm parses, so
the test lexes the actions of every file of the chart (subcharts included; helpers too), and of
the value files and inline values (which ``tpl`` may evaluate), and looks for those names as
function identifiers (not ``.field`` or ``$var``; string literals and comments skipped). Text
assembled at render time can only run through ``tpl``, so a chart whose actions use ``tpl`` is
always rendered twice, and so is one holding a packaged subchart (``.tgz``: not read here) or a
file that cannot be read.

Cost: when needed, one extra helm run per app on a cache miss, run concurrently with the first. A
render that matched its second run is recorded in the cache directory
(``<render key>.deterministic``), so a cache hit of proven output costs nothing: the warm and
pre-commit paths run no extra helm. Without a cache (``--no-cache``) every app that ``may_vary``
is rendered twice.

Limit: a template that only formats the time coarsely (``now | date "2006-01-02"``) renders the
same twice within the same day; only its day-to-day drift escapes.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Iterator

from . import render
from .findings import Finding, Severity
from .model import Manifest
from .policy import template_line
from .rendercache import RenderCache, chart_files

RULE = "argocd/non-deterministic-render"
MAX_PATHS = 3  # differing fields named per object


PROOF_SUFFIX = ".deterministic"

#: Template functions (helm v4.2.1 + sprig v3.3.0) whose result can differ between two runs on the
#: same input; ``tpl`` evaluates text that may be built at render time, so it counts too.
VARYING = frozenset({
    # the clock (the date functions read time.Now() when not given a time)
    "now", "ago", "date", "dateInZone", "date_in_zone", "htmlDate", "htmlDateInZone", "dateModify", "date_modify",
    "mustDateModify", "durationRound", "unixEpoch", "toDate", "mustToDate",
    # randomness
    "randAlphaNum", "randAlpha", "randAscii", "randNumeric", "randBytes", "randInt", "uuidv4", "shuffle",
    "genPrivateKey", "genCA", "genCAWithKey", "genSelfSignedCert", "genSelfSignedCertWithKey", "genSignedCert",
    "genSignedCertWithKey", "buildCustomCert", "derivePassword", "bcrypt", "htpasswd", "encryptAES",
    # Go map iteration order
    "keys", "values",
    # the environment, the network, the cluster
    "env", "expandenv", "getHostByName", "lookup",
    # text evaluated as a template
    "tpl",
})
_IDENT = re.compile(r"(?<![\w.$])[A-Za-z_]\w*")
_charts: dict[str, bool] = {}   # chart tree digest -> may vary
_charts_lock = threading.Lock()


def actions(text: str) -> Iterator[str]:
    """The code of each template action ``{{ ... }}`` in ``text``, string literals and comments
    left out (a ``}}`` inside a string does not end the action, as in Go's lexer)."""
    i, n = 0, len(text)
    while True:
        i = text.find("{{", i)
        if i < 0:
            return
        i += 2
        code = []
        while i < n and not text.startswith("}}", i):
            c = text[i]
            if c in "\"'`":
                j = i + 1
                while j < n and text[j] != c:
                    j += 2 if text[j] == "\\" and c != "`" else 1
                i = j + 1
                code.append(" ")
            elif text.startswith("/*", i):
                j = text.find("*/", i + 2)
                i = n if j < 0 else j + 2
                code.append(" ")
            else:
                code.append(c)
                i += 1
        yield "".join(code)


def uses_varying(text: str) -> bool:
    return any(w in VARYING for code in actions(text) for w in _IDENT.findall(code))


def _chart_may_vary(root: Path) -> bool:
    for path in chart_files(root):
        if path.name.endswith((".tgz", ".tar.gz")):
            return True   # a packaged subchart: its templates are not read here
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return True
        if "{{" in text and uses_varying(text):
            return True
    return False


def may_vary(repo: Path, req: render.RenderRequest, cache: RenderCache | None) -> bool:
    """False only when no file helm reads for ``req`` calls a function in ``VARYING``: then two
    renders are the same by construction and the second one is not run."""
    for text in [req.values_yaml or "", *req.set.values(), *req.set_string.values()]:
        if uses_varying(text):
            return True
    for rel in req.value_files:
        try:
            if uses_varying((repo / rel).read_bytes().decode("utf-8", "replace")):
                return True
        except OSError:
            return True
    if cache is None:
        return _chart_may_vary(repo / req.chart)
    digest = cache.chart_digest(repo, req.chart)
    with _charts_lock:
        known = _charts.get(digest)
    if known is None:
        known = _chart_may_vary(repo / req.chart)
        with _charts_lock:
            _charts[digest] = known
    return known


def render_checked(repo: Path, req: render.RenderRequest, helm: str, cache: RenderCache | None,
                   timeout: float) -> render.Rendered:
    """``render.render``, plus the determinism check: a second, uncached helm run alongside the
    first, unless ``may_vary`` rules a difference out or the output comes from the cache and was
    already shown to be deterministic."""
    if not may_vary(repo, req, cache):
        return render.render(repo, req, helm, cache, timeout)
    key = cache.key(repo, req, helm) if cache else None
    proof = cache.directory / f"{key}{PROOF_SUFFIX}" if cache and key else None
    if cache and key and cache.get(key) is not None:
        first = render.render(repo, req, helm, cache, timeout)
        if proof is not None and cache.get_file(proof) is not None:
            return first
        text2, err2 = render.run_helm(repo, req, helm, timeout)  # a cache entry nobody checked yet
    else:
        from concurrent.futures import ThreadPoolExecutor  # only with a render to do: not on a warm run's imports
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
