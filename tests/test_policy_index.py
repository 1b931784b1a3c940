"""Policy evaluation is linear: rules read other objects through Context's indexes, and the
indexes change no finding.

Three checks: the indexed look-ups against the linear scans they replaced (on planted defects,
odd namespaces included); the whole CLI against the code before the indexes (commit BASELINE,
run from `git archive`) on a generated manifest set and a generated repo; and the growth of
policy.evaluate from 2,000 to 20,000 objects (a ratio of times measured side by side).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tarfile
import io
import time
from functools import cached_property
from pathlib import Path

import pytest
import yaml

import synth
from conftest import ROOT, run_cli, tool_env
from gitops_validate import policy
from gitops_validate.model import WORKLOAD_KINDS, ClusterFacts, Manifest, pod_labels
from gitops_validate.rules import Context
from gitops_validate.rules.base import _pair_in, _selects_all, node_ports
from gitops_validate.yamlio import load_all, split_stream

#: The last commit whose policy rules scanned ctx.objects (before the indexes).
BASELINE = "b3b20a5"


def load(text: str) -> list[Manifest]:
    """The objects of a stream, read as `--manifests` reads them."""
    return [Manifest(d.data, "objs.yaml", d.line, yaml=d) for chunk in split_stream(text)
            for d in load_all(chunk.text, first_line=chunk.first_line) if isinstance(d.data, dict)]


def load_data(text: str) -> list[Manifest]:
    """The objects of a stream without line numbers (no node graphs): ten times faster to read."""
    return [Manifest(d, "objs.yaml") for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if isinstance(d, dict)]


def facts(units: int) -> ClusterFacts:
    cf = ClusterFacts("synthetic", directory="clusters/synthetic")
    nns = max(1, units // 10)
    for i in range(0, units, synth.EXTERNAL_SECRET_EVERY):
        cf.external_secrets[(f"ns{i % nns}", f"ext{i}")] = frozenset({"ca.crt"} if i % 13 == 6 else {"token"})
    return cf


class ScanContext(Context):
    """Every look-up as the linear scan the rules did before the indexes."""

    def find(self, kind, namespace, name):
        return next((m for m in self.objects if m.kind == kind and m.name == name and m.namespace == namespace), None)

    def in_namespace(self, kind, namespace):
        return [m for m in self.objects if m.kind == kind and m.namespace == namespace]

    def of_kind(self, kind):
        return [m for m in self.objects if m.kind == kind]

    def workloads_in(self, namespace):
        return [w for w in self.objects if w.kind in WORKLOAD_KINDS and w.namespace == namespace and not w.is_hook()]

    def workloads_selected_by(self, namespace, selector):
        out = []
        for w in self.workloads_in(namespace):
            labels = pod_labels(w)
            if isinstance(labels, dict) and all(str(labels.get(k)) == str(v) and k in labels for k, v in selector.items()):
                out.append(w)
        return out

    def services_with_node_port(self, port):
        return [(s.namespace or "", s.name, i) for s in self.objects if s.kind == "Service"
                for i, n in node_ports(s) if n == port]

    def selector_candidates(self, kind, namespace, labels):
        return [m for m in self.objects if m.kind == kind and m.namespace == namespace and not _selects_all(m, kind)]

    def selecting_every_pod(self, kind, namespace):
        return [m for m in self.objects if m.kind == kind and m.namespace == namespace and _selects_all(m, kind)]

    def workloads_labelled(self, namespace, pairs, hooks=False):
        return [w for w in self.objects if w.kind in WORKLOAD_KINDS and w.namespace == namespace
                and (hooks or not w.is_hook()) and all(_pair_in(pod_labels(w), k, v) for k, v in pairs.items())]

    @cached_property
    def namespaces(self):
        # the old scan crashed on a list namespace (unhashable); no host name can equal one anyway
        return ({o.namespace for o in self.objects if o.namespace and not isinstance(o.namespace, (list, dict))}
                | {o.name for o in self.objects if o.kind == "Namespace"})


ODD = """apiVersion: v1
kind: Service
metadata: {name: odd, namespace: [a, b]}
spec: {selector: {app: odd}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: odd, namespace: [a, b]}
spec:
  template:
    metadata: {labels: {app: odd, 1: one}}
    spec:
      serviceAccountName: nobody
      containers: [{name: c, image: "docker.io/library/nginx:1.27", ports: [{containerPort: 81}]}]
---
apiVersion: v1
kind: Service
metadata: {name: numeric, namespace: ns0}
spec: {selector: {1: one, tier: web}, ports: [{port: 80, targetPort: "8080", nodePort: "30002"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: numeric, namespace: ns0}
spec:
  template:
    metadata: {labels: {1: one, tier: web}}
    spec: {containers: [{name: c, image: "docker.io/library/nginx:1.27", ports: [{containerPort: 8080}]}]}
"""


def _findings(ctx_class: type[Context], objs: list[Manifest], cf: ClusterFacts) -> list[tuple]:
    ctx = ctx_class(tuple(objs), cf, ("docker.io/library/",))
    return sorted((f.rule, f.line, f.message, str(f.object)) for f in policy.evaluate(objs, ctx))


def test_indexed_lookups_give_the_findings_of_linear_scans():
    objs = load(synth.manifest_stream(120) + "---\n" + synth.network_stream(120) + "---\n" + ODD)
    indexed, scanned = _findings(Context, objs, facts(120)), _findings(ScanContext, objs, facts(120))
    assert indexed == scanned
    rules = {f[0] for f in indexed}
    # the planted defects reach every rule that looks at other objects
    assert {"refs/service-selector", "refs/target-port", "refs/missing-configmap", "refs/missing-serviceaccount",
            "refs/nodeport", "refs/in-cluster-url", "secrets/missing-secret", "secrets/missing-key",
            "refs/networkpolicy-selects-nothing", "refs/traffic-blocked"} <= rules
    blocked = " ".join(f[2] for f in indexed if f[0] == "refs/traffic-blocked")
    for path in ("cannot look up", "at the caller's egress", "at the callee's ingress", "clients outside the cluster"):
        assert path in blocked     # every kind of blocked path


def test_a_service_selecting_only_a_hook_selects_nothing():
    ctx = Context(tuple(load(synth.manifest_stream(3))))
    assert ctx.workloads_selected_by("ns0", {"app": "appx2"}) == []          # only the hook Job has it
    assert [w.name for w in ctx.workloads_selected_by("ns0", {"app": "app1"})] == ["app1"]
    assert [w.name for w in ctx.workloads_selected_by("ns0", {"tier": "web"})] == ["app0", "app1", "app2"]
    assert [w.name for w in ctx.workloads_selected_by("ns0", {})] == ["app0", "app1", "app2"]


# --- the same JSON as the code before the indexes ------------------------------------------------

def _baseline_code(dest: Path, rev: str = BASELINE) -> Path:
    """The validator package of ``rev``, extracted from git (a full clone has it)."""
    out = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, "validator"],
                         capture_output=True, timeout=60)
    if out.returncode != 0:
        pytest.fail(f"cannot read commit {rev} (a shallow clone?): {out.stderr.decode()[-300:]}")
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def _run_baseline(code: Path, cwd: Path, *args: str) -> tuple[int, dict, set[str]]:
    """Exit code, JSON report and rule ids of the BASELINE validator."""
    env = tool_env() | {"PYTHONPATH": str(code)}
    script = ("import sys, json; from validator.cli import main; from validator.rules import REGISTRY; "
              "code = main(sys.argv[1:]); sys.stdout.flush(); print('\\n' + json.dumps(sorted(REGISTRY))); sys.exit(code)")
    p = subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=600)
    report, _, rules = p.stdout.rpartition("\n\n")
    assert p.returncode in (0, 1), p.stderr[-2000:]
    return p.returncode, json.loads(report), set(json.loads(rules))


def _compare(old: tuple[int, dict, set[str]], new_code: int, new: dict) -> None:
    code, report, rules = old
    # rules added after BASELINE are not part of the comparison
    # what was found, on which object: later work (provenance, bounded messages) changes where a
    # finding points and how it reads (so two clusters' findings no longer merge into one), never
    # what the indexes find
    def found(findings: list[dict]) -> list[tuple]:
        return sorted({(f["rule"], f["severity"], f["app"] or "", json.dumps(f["object"], sort_keys=True))
                       for f in findings if f["rule"] in rules})
    assert found(new["findings"]) == found(report["findings"])
    assert new_code == code
    assert report["findings"], "the planted defects found nothing: the comparison would prove nothing"


def test_findings_identical_to_the_code_before_the_indexes(tmp_path: Path):
    code = _baseline_code(tmp_path / "baseline")
    # a manifest set with planted defects (--manifests: schema + policy)
    mdir = tmp_path / "manifests"
    (mdir / "clusters/synthetic").mkdir(parents=True)
    (mdir / "clusters/synthetic/cluster.yaml").write_text(synth.cluster_facts(150))
    (mdir / "objs.yaml").write_text(synth.manifest_stream(150) + "---\n" + ODD.split("---\n", 2)[2])
    subprocess.run(["git", "init", "-q"], cwd=mdir, check=True)
    args = ("--manifests", "objs.yaml", "--format", "json")
    new = run_cli(*args, cwd=mdir)
    _compare(_run_baseline(code, mdir, *args), new.code, new.json)
    # a repo made of this repo's charts: 8 apps in each of 2 clusters, with planted defects
    repo = synth.make_repo(tmp_path / "repo", 8, clusters=2)
    new = run_cli("--no-cache", "--format", "json", cwd=repo)
    _compare(_run_baseline(code, repo, "--no-cache", "--format", "json"), new.code, new.json)


# --- the same JSON as the code before the network indexes and kubeconform's batches ----------

#: The last commit before them (the network rules scanned a namespace per pod; kubeconform got one
#: file per object).
BEFORE_BATCHES = "f4c7078"


def every_family_stream() -> str:
    """Generated objects with every cross-object defect (network ones included), the odd namespaces,
    and every rule's own failing example: a defect of every rule family, many objects that share a
    kind and name (kubeconform's batches must tell them apart) and some that are not objects."""
    from gitops_validate.rules import REGISTRY
    examples = [r.bad for _, r in sorted(REGISTRY.items())]
    return "---\n".join([synth.manifest_stream(150), synth.network_stream(150), ODD, *examples])


_DUP = "yaml/duplicate-key"


def _same_findings(new: list[dict], before: list[dict]) -> None:
    """Every field of every finding equal, in order, but for yaml/duplicate-key: the code before
    counted its lines (and "first at line N") from the start of the document, not of the file, in a
    stream (fixed since; tests/test_cli.py pins the file's line). Those are the same findings on the
    same objects, the duplicate at or after its first occurrence (a flow mapping is one line)."""
    assert [f for f in new if f["rule"] != _DUP] == [f for f in before if f["rule"] != _DUP]

    def shape(f: dict) -> tuple:
        return f["file"], str(f["object"]), re.sub(r"line \d+", "line N", f["message"])
    new_dups, old_dups = [f for f in new if f["rule"] == _DUP], [f for f in before if f["rule"] == _DUP]
    assert sorted(map(shape, new_dups)) == sorted(map(shape, old_dups))
    for f in new_dups:
        assert f["line"] >= int(re.search(r"first at line (\d+)", f["message"]).group(1)), f


def test_findings_identical_to_the_code_before_the_batches(tmp_path: Path):
    code = _baseline_code(tmp_path / "baseline", BEFORE_BATCHES)
    mdir = tmp_path / "manifests"
    (mdir / "clusters/synthetic").mkdir(parents=True)
    (mdir / "clusters/synthetic/cluster.yaml").write_text(synth.cluster_facts(150))
    (mdir / "objs.yaml").write_text(every_family_stream())
    subprocess.run(["git", "init", "-q"], cwd=mdir, check=True)
    args = ("--manifests", "objs.yaml", "--format", "json")
    new = run_cli(*args, cwd=mdir)
    code_before, before, _ = _run_baseline(code, mdir, *args)
    assert new.code == code_before
    _same_findings(new.json["findings"], before["findings"])      # every field, in order
    families = {f["rule"].split("/")[0] for f in new.json["findings"]}
    assert {"argocd", "images", "probes", "refs", "resources", "schema", "secrets", "security", "yaml"} <= families
    assert {"refs/traffic-blocked", "refs/networkpolicy-selects-nothing", "schema/invalid",
            "schema/unknown-kind"} <= {f["rule"] for f in new.json["findings"]}
    # a repo made of this repo's charts: every app ships NetworkPolicies; 2 clusters, planted defects
    repo = synth.make_repo(tmp_path / "repo", 8, clusters=2)
    new = run_cli("--no-cache", "--format", "json", cwd=repo)
    code_before, before, _ = _run_baseline(code, repo, "--no-cache", "--format", "json")
    assert (new.code, new.json["findings"]) == (code_before, before["findings"])
    assert before["findings"]


# --- linear growth -----------------------------------------------------------------------------

def _evaluate_seconds(objs: list[Manifest], cf: ClusterFacts) -> float:
    ctx = Context(tuple(objs), cf, ("docker.io/library/",))   # fresh: the indexes are built in the timing
    start = time.perf_counter()
    policy.evaluate(objs, ctx)
    return time.perf_counter() - start


def test_policy_evaluation_grows_linearly():
    small_units, large_units = 380, 3800     # about 2,000 and 20,000 objects
    small, large = load_data(synth.manifest_stream(small_units)), load_data(synth.manifest_stream(large_units))
    assert 1900 < len(small) < 2200 and 19000 < len(large) < 22000, (len(small), len(large))
    # interleaved, medians: a load that changes during the test hits both sizes alike (the fastest
    # run would favour the short one, which slips more easily between other processes' bursts)
    t_small, t_large = [], []
    for _ in range(2):
        t_small.append(_evaluate_seconds(small, facts(small_units)))
        t_large.append(_evaluate_seconds(large, facts(large_units)))
        t_small.append(_evaluate_seconds(small, facts(small_units)))
    t_small, t_large = statistics.median(t_small), statistics.median(t_large)
    ratio = t_large / t_small
    # 10x the objects: linear is about 10x, the scans this replaced were about 100x (2.3 as exponent)
    assert ratio < 20, f"{len(small)} objects: {t_small:.2f} s, {len(large)}: {t_large:.2f} s, ratio {ratio:.1f}"



# --- the same JSON as the code before the fast YAML reader -----------------------------------------

#: The last commit before `--manifests` read YAML through yamlio's fast constructor (and the schema
#: stage serialised each object once).
BEFORE_FAST_READ = "54c0c41"

_DEPLOYMENT = """apiVersion: apps/v1   # a comment after a value
kind: Deployment
metadata:
  name: {name}
  namespace: tricky
  labels: &labels {{app: {name}, "tier": web}}
spec:
  replicas: 0x2
  selector: {{matchLabels: *labels}}
  template:
    metadata: {{labels: *labels}}
    spec:
      # a comment line inside the spec
      containers:
        - &container
          name: c
          image: "nginx:latest"
          ports: [{{containerPort: 8080, name: http}}, {{containerPort: 0o17, name: !!str 9}}]
          env:
            - {{name: A, value: 2024-01-01}}
            - {{name: B, value: !!str 1.5, other: -0b101}}
            - {{name: A, value: .inf}}
        - *container
        - name: d
          image: nginx:1.27
          securityContext: {{privileged: yes, runAsUser: 1_000}}
{merged}"""

_MERGED = """        - <<: *container
          name: e
          env: [{name: C, value: !!binary aGVsbG8=}]
"""


def tricky_files() -> dict[str, bytes]:
    """Manifests in every shape YAML allows, each with defects to point at: comments, anchors,
    aliases and merge keys, flow style, explicit tags, dates, octal, hex and binary numbers,
    non-finite floats, CRLF, CR-only and Unicode line ends, a BOM, and the bad inputs (duplicate
    keys, syntax errors, alias bombs, deep nesting, not a mapping) among good ones."""
    bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    merge_bomb = "a: &a {k: [x,x,x,x,x,x,x,x,x,x]}\n" + "".join(
        f"{c}: &{c} {{<<: *{p}, {''.join(f'{c}{i}: *{p}, ' for i in range(10))}z: 1}}\n"
        for p, c in zip("abcdefgh", "bcdefghi"))
    plain = "\n---\n".join([
        _DEPLOYMENT.format(name="anchors", merged=""),
        _DEPLOYMENT.format(name="merged", merged=_MERGED),
        "apiVersion: v1\nkind: Service\nmetadata: {name: flow, namespace: tricky}\n"
        "spec: {selector: {app: nobody}, ports: [{port: 80, targetPort: http, nodePort: 30000}], type: NodePort}\n"
        "...\n",   # a document end
        "%YAML 1.1\n--- !!map\n"   # a directive and an explicit tag
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dates, namespace: tricky}\n"
        "data: {when: 2024-01-01 10:00:00, 1: one, true: yes, null: ~, 0x10: hex, 1.5: x}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: set, namespace: tricky}\ndata: !!set {a, b}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n  name: dup2\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n data: {}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keys, namespace: tricky}\ndata: {\"1\": a, 01: b}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hexkeys, namespace: tricky}\ndata: {0x10: a, \"0x10\": b}\n",
        bomb, merge_bomb,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: " + "[" * 3000 + "]" * 3000 + "\n",
        "- a list\n- not an object\n",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: tagged, namespace: tricky}\ntype: !custom Opaque\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: \"caf\u00e9\u2028x\", namespace: tricky}\n"
        "spec: {containers: [{name: c, image: web}]}\n",
    ]) + "\n"
    crlf = _DEPLOYMENT.format(name="crlf", merged="").replace("\n", "\r\n")
    cr = ("apiVersion: v1\rkind: Service\rmetadata: {name: cr, namespace: tricky}\r"
          "spec: {selector: {app: crlf}, ports: [{port: 80, targetPort: 9999}]}\r")
    # NEL, LS and PS are line breaks to YAML and to str.splitlines; VT and FF to str.splitlines only
    # (and YAML refuses them as characters: the whole chunk is a finding)
    nel = "---\n".join([_DEPLOYMENT.format(name="nel", merged="").replace("\n", "\x85", 5),
                        _DEPLOYMENT.format(name="ls", merged="").replace("# a comment line", "# a\u2028# comment\u2029# line"),
                        _DEPLOYMENT.format(name="after", merged="")])
    vt = _DEPLOYMENT.format(name="vt", merged="").replace("# a comment line", "#\x0b a comment\x0cline")
    return {"plain.yaml": plain.encode(), "crlf.yaml": ("\ufeff" + crlf + "---\r\n" + cr).encode(),
            "cr.yaml": cr.encode(), "unicode.yaml": nel.encode(), "vt.yaml": (vt + "---\n" + cr).encode()}


def test_the_tricky_files_take_both_ways_of_reading():
    """The comparison below proves something about the fast constructor only if it reads most of
    the tricky documents, and hands the others (merge keys, sets, bad input) to PyYAML's."""
    from gitops_validate import yamlio
    fast = slow = 0
    for raw in tricky_files().values():
        for chunk in split_stream(raw.decode("utf-8-sig")):
            if yamlio._load_fast(chunk.text, chunk.first_line) is None:
                slow += 1
            else:
                fast += 1
    assert fast >= 8 and slow >= 8, (fast, slow)


#: The last commit before the C callables in yamlio's loader and the string fast path of its
#: constructor (docs/performance.md, change 19).
BEFORE_C_HOOKS = "8e98044"


@pytest.mark.parametrize("rev", [BEFORE_FAST_READ, BEFORE_C_HOOKS])
def test_manifests_findings_identical_to_the_code_before_the_fast_reader(tmp_path: Path, rev: str):
    """Every finding of --manifests, its file and line included, as before the fast YAML reader (and
    before change 19), on the every-family stream and on manifests in every shape YAML allows
    (tricky_files)."""
    code = _baseline_code(tmp_path / "baseline", rev)
    mdir = tmp_path / "manifests"
    (mdir / "clusters/synthetic").mkdir(parents=True)
    (mdir / "clusters/synthetic/cluster.yaml").write_text(synth.cluster_facts(150))
    (mdir / "objs.yaml").write_text(every_family_stream())
    for name, raw in tricky_files().items():
        (mdir / name).write_bytes(raw)
    subprocess.run(["git", "init", "-q"], cwd=mdir, check=True)
    for files in (["objs.yaml"], sorted(tricky_files())):
        args = ("--manifests", *files, "--format", "json")
        new = run_cli(*args, cwd=mdir)
        code_before, before, _ = _run_baseline(code, mdir, *args)
        assert new.code == code_before
        _same_findings(new.json["findings"], before["findings"])      # every field, in order: lines included
        assert new.json["summary"]["objects"] == before["summary"]["objects"]
    rules = {(f["rule"], f["file"]) for f in new.json["findings"]}
    # the tricky files reach the rules, and each kind of bad input is reported, not skipped
    for rule in ("yaml/duplicate-key", "yaml/syntax", "yaml/alias-bomb", "schema/not-kubernetes",
                 "schema/non-finite-number", "images/latest-tag", "security/privileged"):
        assert rule in {r for r, _ in rules}, rule
    assert {f for _, f in rules} >= set(tricky_files())
    lines = {f["line"] for f in new.json["findings"] if f["file"] in ("crlf.yaml", "unicode.yaml", "cr.yaml")}
    assert len(lines) > 10, lines   # findings inside those files point at lines of their own


def test_the_remembered_tags_stay_bounded():
    """yamlio remembers the tag of each scalar it resolved: a text of distinct scalars must not grow
    that memory without bound, and reads the same as PyYAML's own safe loader."""
    from gitops_validate import yamlio
    text = "items:\n" + "".join(f"  - v{i}\n  - {i}\n" for i in range(120_000))
    doc = next(load_all(text))
    assert doc.data == yaml.load(text, Loader=yaml.CSafeLoader)
    info = yamlio._cached_resolve.cache_info()
    assert info.maxsize is not None and info.currsize <= info.maxsize < 100_000


def _graph(node) -> list:
    """A node graph as plain data: class, tag, value, style and both marks of every node (an
    aliased node once: the alias bombs are graphs of a few nodes)."""
    out, stack, seen = [], [node], set()
    while stack:
        n = stack.pop()
        out.append(len(seen) if id(n) not in seen else ("alias", n.start_mark.index))
        if id(n) in seen:
            continue
        seen.add(id(n))
        marks = (n.start_mark.index, n.start_mark.line, n.start_mark.column,
                 n.end_mark.index, n.end_mark.line, n.end_mark.column)
        out.append((type(n).__name__, n.tag, n.value if isinstance(n.value, str) else len(n.value),
                    getattr(n, "style", None), getattr(n, "flow_style", None), marks))
        if isinstance(n.value, list):
            stack.extend(x for item in n.value for x in (item if isinstance(item, tuple) else (item,)))
    return out


def test_the_loader_composes_what_pyyamls_safe_loader_composes():
    """yamlio's loader swaps the resolver's per-node hooks for C callables (a cache and two no-ops):
    on every tricky file, every generated object and a stream of every YAML 1.1 implicit type,
    quoted and not, each node has the class, tag, value, style and marks PyYAML's own safe loader
    gives it, and the same errors are raised."""
    from gitops_validate import yamlio
    scalars = ["~", "null", "Null", "true", "True", "yes", "No", "on", "OFF", "y", "n", "0", "-1", "0o17",
               "017", "0x1F", "0b101", "1_000", "190:20:30", "1.5", ".5", "1e3", "1.0e+3", ".inf", "-.Inf",
               ".nan", "2024-01-01", "2024-01-01 10:00:00", "2024-01-01T10:00:00Z", "<<", "=", "", "abc",
               "8080", "v1", "- x"]
    types = "".join(f"k{i}: {s}\nq{i}: '{s}'\nd{i}: \"{s}\"\nl{i}: [{s}]\n"
                    for i, s in enumerate(scalars) if not s.startswith("-") and s not in ("", "="))
    texts = [raw.decode("utf-8-sig") for raw in tricky_files().values()]
    texts += [every_family_stream(), types, "a: [1, 2\n", "a: *nope\n", "a: &x 1\nb: &x 2\n"]
    compared = 0
    for text in texts:
        for chunk in split_stream(text):
            graphs = []
            for loader in (yamlio._Loader, yaml.CSafeLoader):
                got, l = [], loader(chunk.text)
                try:
                    while l.check_node():
                        node = l.get_node()
                        got.append(None if node is None else _graph(node))
                except yaml.YAMLError as e:
                    got.append(("error", str(e)))
                finally:
                    l.dispose()
                graphs.append(got)
            assert graphs[0] == graphs[1], chunk.text[:200]
            compared += 1
    assert compared > 300, compared


def test_a_rule_finds_nothing_outside_its_kinds():
    """policy.evaluate skips a rule for an object whose kind its ``kinds`` leaves out: proven safe
    by running each such rule on every object of another kind (every family's defects, every rule's
    failing example, the tricky files, each object also relabelled as every kind the rules name):
    no finding, no error, and no look-up of another object (the result cache's ``Watched``)."""
    from gitops_validate import policy
    from gitops_validate.rules import POLICY_RULES
    scoped = [r for r in POLICY_RULES if r.kinds is not None]
    assert len(scoped) >= 20, [r.id for r in scoped]
    texts = [every_family_stream()] + [raw.decode("utf-8-sig") for raw in tricky_files().values()]
    docs = []
    for text in texts:
        for chunk in split_stream(text):
            try:
                docs += [d.data for d in load_all(chunk.text, first_line=chunk.first_line) if isinstance(d.data, dict)]
            except Exception:  # noqa: BLE001 - the bad documents are findings of their own
                continue
    named = set().union(*(r.kinds for r in scoped)) | {"Service", "ConfigMap", "Namespace", "Application", ""}
    objs = [Manifest(d, "f.yaml", 1) for d in docs]
    objs += [Manifest({**d, "kind": kind}, "f.yaml", 1) for d in docs[:400] for kind in sorted(named)]
    ctx = Context(tuple(objs), facts(150), ("registry.example.com",))
    checked = 0
    for rule in scoped:
        for m in objs:
            if m.kind in rule.kinds:
                continue
            watched = policy.Watched(ctx)
            assert list(rule.check(m, watched)) == [], (rule.id, m.doc)
            assert not watched.crossed, (rule.id, m.kind)
            checked += 1
    assert checked > 50_000, checked


# --- change 25: the stream split with str.find, each object's pod template read once -------------

#: The last commit before change 25 (docs/performance.md).
BEFORE_CHANGE_25 = "2a5afac"

_SKIPS = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: skipping
  namespace: tricky
  annotations:
    gitops-validate/skip: |
      security/privileged: a test of the skip
      images/latest-tag
      probes/missing-liveness: none; resources/missing-limits: none either
spec:
  selector: {matchLabels: {app: skipping}}
  template:
    metadata: {labels: {app: skipping}}
    spec:
      containers:
        - {name: c, image: "nginx:latest", securityContext: {privileged: true}}
      initContainers:
        - {name: i, image: "nginx:latest", restartPolicy: Always, securityContext: {privileged: true}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron, namespace: tricky}
spec:
  schedule: "* * * * *"
  jobTemplate: {spec: {template: {spec: {containers: [{name: j, image: "nginx:latest"}], restartPolicy: Never}}}}
--- # a separator with a comment
# Source: chart/templates/pod.yaml
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: tricky}
spec: {containers: "not a list", initContainers: [{name: i, image: nginx:1.27}, 7]}
----
---x
"""


def test_manifests_findings_identical_to_the_code_before_change_25(tmp_path: Path):
    """Every finding of --manifests, lines included, and the exit code and object count, as at
    BEFORE_CHANGE_25: on the every-family stream, the tricky files (CR, CRLF, Unicode line ends: the
    old way of splitting; the others: str.find's) and objects with skip annotations, init containers,
    a CronJob and malformed containers (the remembered pod template and containers)."""
    code = _baseline_code(tmp_path / "baseline", BEFORE_CHANGE_25)
    mdir = tmp_path / "manifests"
    (mdir / "clusters/synthetic").mkdir(parents=True)
    (mdir / "clusters/synthetic/cluster.yaml").write_text(synth.cluster_facts(150))
    (mdir / "objs.yaml").write_text(every_family_stream())
    (mdir / "skips.yaml").write_text(_SKIPS)
    for name, raw in tricky_files().items():
        (mdir / name).write_bytes(raw)
    subprocess.run(["git", "init", "-q"], cwd=mdir, check=True)
    for files in (["objs.yaml", "skips.yaml"], sorted(tricky_files())):
        args = ("--manifests", *files, "--format", "json")
        new = run_cli(*args, cwd=mdir)
        code_before, before, _ = _run_baseline(code, mdir, *args)
        assert new.code == code_before
        assert new.json["findings"] == before["findings"]      # every field, in order
        assert new.json["summary"]["objects"] == before["summary"]["objects"]


def test_the_stream_splits_the_same_both_ways():
    """``split_stream``'s str.find way (a text whose only line break is "\\n") gives the chunks,
    first lines and sources of its line-by-line way, on random texts of separator-like lines."""
    import random
    from gitops_validate import yamlio
    pieces = ["---", "--- ", "---\t# x", "---x", " ---", "----", "--- !!map", "---\u00a0", "--- \u00a0z", "---\x1f",
              "# Source: a/b.yaml", "# Source: ", "# Source:  sp ", "#Source: x", "# Source:x", "a: 1", "", " ",
              "\u00a0", "b:\n  - c", "...", "# c", "x: '---'", "-- -"]
    rnd = random.Random(25)
    for _ in range(20_000):
        text = "\n".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 8))) + rnd.choice(["", "\n"])
        fast, slow = yamlio._split_lf(text), yamlio._split_lines(text)
        assert [(c.text, c.first_line, c.source) for c in fast] == \
            [(c.text, c.first_line, c.source) for c in slow], repr(text)
    stream = every_family_stream()
    assert [vars(c) for c in split_stream(stream)] == [vars(c) for c in yamlio._split_lines(stream)]
    # a text with another line break takes the line-by-line way
    assert split_stream("a: 1\r\n---\r\nb: 2\r\n")[1].first_line == 3


def test_the_remembered_pod_template_is_the_objects_own_and_forgotten_after():
    from gitops_validate import model
    ms = []
    for chunk in split_stream(every_family_stream() + "---\n" + _SKIPS):
        try:
            ms += [Manifest(d.data, "f") for d in load_all(chunk.text) if isinstance(d.data, dict)]
        except Exception:   # the rules' own bad examples include bad YAML
            continue
    expected = [(model._pod_template(m), list(model._containers(m))) for m in ms]
    seen = []
    for m in model.one_by_one(ms):
        # asked twice, and about another object in between (a rule that looks at others)
        other = ms[0]
        seen.append((model.pod_template(m), list(model.containers(m))))
        assert (model.pod_template(other), list(model.containers(other))) == expected[0]
        assert list(model.containers(m)) == seen[-1][1]
    assert seen == expected
    assert sum(1 for _, cs in seen if cs) > 100
    # after the loop (or a rule's exception inside it) nothing is remembered: a changed object is read again
    for m in model.one_by_one(ms):
        model.containers(m)
        break
    assert model._current[0] is None
    m = next(m for m in ms if list(model.containers(m)))
    m.doc["spec"] = {}
    assert list(model.containers(m)) == [] and model.pod_template(m) is None


def test_the_json_for_kubeconform_is_json_dumps_text(monkeypatch):
    """``schema.as_json`` builds json's C encoder itself: the same text as ``json.dumps(doc,
    default=str, allow_nan=False)`` on every object of the every-family stream and the tricky files,
    and on keys and values that are not JSON's own (None, bools, floats, bytes, a class)."""
    import json
    from gitops_validate import schema
    objects = []
    for text in [every_family_stream()] + [raw.decode("utf-8-sig") for raw in tricky_files().values()]:
        for chunk in split_stream(text):
            try:
                objects += [d.data for d in load_all(chunk.text) if isinstance(d.data, dict)]
            except Exception:   # bad YAML among them
                continue
    objects += [{1: 2, None: 3, True: 4, 1.5: "\u00e9\u2028"}, {"b": {"c": [1, 2.5, None, b"x", {"d": 1e300}]}},
                {"r": object, "s": {"t": ()}}]
    assert len(objects) > 300
    objects.append({"a": [float("nan")]})
    new = [schema.as_json(doc) for doc in objects]
    monkeypatch.setattr(schema, "_encoder", None)   # json.dumps, as before
    assert new == [schema.as_json(doc) for doc in objects]
    assert new[-1] is None and sum(t is None for t in new) >= 2
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular"):   # as json.dumps: refused, not a hang
        "".join(json.encoder.c_make_encoder({}, str, json.encoder.encode_basestring_ascii, None, ": ", ", ",
                                            False, False, False)(loop, 0))
