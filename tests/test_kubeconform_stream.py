"""`--manifests` streams each object to kubeconform as it is read (schema.Streamed, docs/performance.md
change 22): the same findings as the code before it (64f603a, one kubeconform run after reading)
on hostile inputs — many objects of one kind, apiVersion and name, Lists, empty documents, names
that are not text, a CRD of the run and its objects, objects kubeconform cannot read — each object
accounted for exactly once, and a kubeconform that loses, doubles or invents results, or never
reads its stream, is exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gitops_validate import yamlio

import synth
from conftest import TOOLS, run_cli, tool_env
from test_failclosed import EMPTY_LISTS, KUBECONFORM_FAULTS, REAL_KUBECONFORM, assert_cannot_run, fake_bin
from test_policy_index import _baseline_code, _run_baseline, _same_findings, every_family_stream

#: The last commit before the stream: kubeconform started after all YAML was read.
BEFORE_STREAM = "64f603a"

_CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties: {size: {type: integer}}
              additionalProperties: false
"""


def hostile_stream() -> str:
    """Objects that the stream must leave to the run after it, or tell apart, among plain ones."""
    same = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: twin, namespace: ns{i}}}\n"
            "data: {{k: v}}\n{extra}")
    docs = [
        same.format(i=0, extra=""),
        same.format(i=1, extra="unknownField: 1\n"),    # same key, invalid: its verdict must not be its twin's
        same.format(i=2, extra=""),
        "",                                              # an empty document
        "# only a comment\n",
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n"
        "  - {apiVersion: v1, kind: ConfigMap, metadata: {name: in-list}, data: {a: b}}\n"
        "metadata: {name: a-list}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 7, namespace: ns0}\ndata: {a: b}\n",       # a number
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: true, namespace: ns0}\ndata: {a: b}\n",    # a boolean
        "apiVersion: 1\nkind: ConfigMap\nmetadata: {name: numeric-version}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: nan, namespace: ns0}\nspec: {ports: [{port: .nan}]}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: ns0}\ndata: {a: b}\n",               # no name
        _CRD,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: ns0}\nspec: {size: 3}\n",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w2, namespace: ns0}\nspec: {size: big}\n",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: ns1}\nspec: {colour: red}\n",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: ns0}\n",           # no schema
        "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: old, namespace: ns0}\n",  # removed API
    ]
    return "---\n".join(docs) + "---\n" + every_family_stream()


@pytest.fixture(scope="module")
def mdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("stream")
    (d / "clusters/synthetic").mkdir(parents=True)
    (d / "clusters/synthetic/cluster.yaml").write_text(synth.cluster_facts(150))
    (d / "hostile.yaml").write_text(hostile_stream())
    (d / "plain.yaml").write_text(synth.manifest_stream(40))
    (d / "crd-only.yaml").write_text(_CRD + "---\napiVersion: example.com/v1\nkind: Widget\n"
                                     "metadata: {name: w}\nspec: {size: x}\n")
    (d / "none.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: x}\n---\n- a list\n")
    subprocess.run(["git", "init", "-q"], cwd=d, check=True)
    return d


@pytest.mark.parametrize("files", [["hostile.yaml"], ["plain.yaml", "hostile.yaml", "plain.yaml"],
                                   ["crd-only.yaml"], ["none.yaml"], ["-"]])
def test_findings_identical_to_the_code_before_the_stream(tmp_path: Path, mdir: Path, files: list[str]):
    """Every field of every finding, in order, and the exit code, as 64f603a gives them."""
    code = _baseline_code(tmp_path / "baseline", BEFORE_STREAM)
    stdin = (mdir / "hostile.yaml").read_text() if files == ["-"] else None
    args = ("--manifests", *files, "--format", "json")
    new = run_cli(*args, cwd=mdir, stdin=stdin)
    if stdin is None:
        code_before, before, _ = _run_baseline(code, mdir, *args)
    else:
        p = subprocess.run([sys.executable, "-c", "import sys; from validator.cli import main; sys.exit(main(sys.argv[1:]))",
                            *args], cwd=mdir, env=tool_env() | {"PYTHONPATH": str(code)}, input=stdin,
                           capture_output=True, text=True, timeout=600)
        code_before, before = p.returncode, json.loads(p.stdout)
    assert new.code == code_before, new.err
    _same_findings(new.json["findings"], before["findings"])
    assert new.json["summary"]["objects"] == before["summary"]["objects"]
    rules = {f["rule"] for f in new.json["findings"]}
    # the verdicts that the stream and the run after it both give are there
    if files[0] in ("hostile.yaml", "-"):
        assert {"schema/invalid", "schema/unknown-kind", "schema/removed-api", "schema/not-kubernetes",
                "schema/non-finite-number"} <= rules, rules
    if files[0] == "crd-only.yaml":
        assert "schema/invalid" in rules, rules


@pytest.mark.parametrize("stdin", [False, True])
def test_an_empty_list_is_zero_objects(tmp_path: Path, mdir: Path, stdin: bool):
    """Argo CD and kubectl make no object of an empty List (items [] or null): not exit 2 (it was:
    kubeconform's result for it names no object), and every other object is accounted for once,
    streamed or in the run after the stream (a one-item List among them)."""
    lists = "---\n".join(EMPTY_LISTS)
    for name in ("plain.yaml", "hostile.yaml"):
        text = (mdir / name).read_text()
        without = run_cli("--manifests", name, "--format", "json", cwd=mdir)
        assert without.code == 1, without.err
        (tmp_path / name).write_text(text + "---\n" + lists)   # after the others: their lines stay
        args = ("--manifests", "-") if stdin else ("--manifests", str(tmp_path / name))
        r = run_cli(*args, "--format", "json", cwd=mdir, stdin=(tmp_path / name).read_text() if stdin else None)
        assert r.code == without.code, r.err
        assert r.json["summary"]["objects"] == without.json["summary"]["objects"]
        assert _named(r.json["findings"], "<stdin>" if stdin else str(tmp_path / name)) == _named(without.json["findings"], name)
    only = tmp_path / "only.yaml"
    only.write_text(lists)
    r = run_cli("--manifests", str(only), "--format", "json", cwd=mdir)
    assert (r.code, r.json["findings"], r.json["summary"]["objects"]) == (0, [], 0), r.err


def _named(findings: list, file: str) -> list:
    """``findings`` with the file name ``file`` (where it points and its related places) made one."""
    return json.loads(json.dumps(findings).replace(json.dumps(file), '"the file"'))


def _logged_kubeconform(tmp_path: Path) -> tuple[dict, Path]:
    log = tmp_path / "kubeconform.log"
    script = f'echo "$*" >> "{log}"\nexec {REAL_KUBECONFORM}'
    return tool_env(str(fake_bin(tmp_path, kubeconform=script))), log


def test_plain_objects_take_one_kubeconform_run(tmp_path: Path, mdir: Path):
    """Objects that the stream can tell apart need no second run: kubeconform starts once."""
    env, log = _logged_kubeconform(tmp_path)
    r = run_cli("--manifests", "plain.yaml", "--format", "json", cwd=mdir, env=env)
    assert r.code in (0, 1), r.err
    assert len(log.read_text().splitlines()) == 1


def test_three_clusters_in_one_stream_take_one_kubeconform_run(tmp_path: Path, mdir: Path):
    """Every object named three times (as in three clusters' renders, one after the other): three
    segments of the stream, one kubeconform, no run after it."""
    env, log = _logged_kubeconform(tmp_path)
    r = run_cli("--manifests", "plain.yaml", "plain.yaml", "plain.yaml", "--format", "json", cwd=mdir, env=env)
    assert r.code == 1, r.err
    assert len(log.read_text().splitlines()) == 1
    assert r.json["summary"]["objects"] == 3 * run_cli("--manifests", "plain.yaml", "--format", "json",
                                                       cwd=mdir).json["summary"]["objects"]


def test_what_the_stream_cannot_tell_apart_goes_to_a_second_run(tmp_path: Path, mdir: Path):
    """hostile.yaml: objects of one (kind, apiVersion, name), each in a segment of the stream of its
    own (one file's report cannot tell them apart), and a List, names that are not text and a
    CRD's objects for the run after the stream."""
    env, log = _logged_kubeconform(tmp_path)
    r = run_cli("--manifests", "hostile.yaml", "--format", "json", cwd=mdir, env=env)
    assert r.code == 1, r.err
    keys: Counter = Counter()
    for chunk in yamlio.split_stream((mdir / "hostile.yaml").read_text()):
        try:
            docs = [d.data for d in yamlio.load_all(chunk.text)]
        except yamlio.YamlProblem:
            continue
        for d in docs:
            key = (d.get("kind"), d.get("apiVersion"), (d.get("metadata") or {}).get("name")) if isinstance(d, dict) else ()
            if key and all(isinstance(v, str) for v in key) and not key[0].endswith("List"):
                keys[key] += 1
    assert max(keys.values()) >= 3
    assert len(log.read_text().splitlines()) == 2


def _twins(n: int, invalid: set[int]) -> str:
    """``n`` ConfigMaps of one name in as many namespaces, those in ``invalid`` with a field too many."""
    return "---\n".join(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: twin, namespace: ns{i}}}\n"
                         f"data: {{k: v}}\n{'unknownField: 1' + chr(10) if i in invalid else ''}" for i in range(n))


def test_objects_of_one_name_go_to_segments_of_their_own_up_to_a_bound(tmp_path: Path, mdir: Path):
    """Changes 30 and 32: an object whose (kind, apiVersion, name) the current segment holds starts
    the next, a FIFO that the stream's one kubeconform reads after the one before it (not a run of
    its own, which compiles the schemas again); past ``schema.SEGMENTS``, to the run after the
    stream. Each verdict stays its own object's: the twins invalid in the first segment, in a later
    one and past the bound are each reported on their own line, as by the code before the stream
    (64f603a)."""
    from gitops_validate.schema import SEGMENTS
    n = SEGMENTS + 2
    text = _twins(n, {1, SEGMENTS - 1, n - 1})
    (tmp_path / "twins.yaml").write_text(text)
    env, log = _logged_kubeconform(tmp_path)
    args = ("--manifests", str(tmp_path / "twins.yaml"), "--format", "json")
    r = run_cli(*args, cwd=mdir, env=env)
    assert r.code == 1, r.err
    # one kubeconform on the FIFOs, in their order, with -n (the cores left), then one run after it
    stream, after = log.read_text().splitlines()
    assert [word.rsplit("/", 1)[1] for word in stream.split()[-SEGMENTS:]] == [f"{k}.json" for k in range(SEGMENTS)]
    assert " -n " in stream and " -n " not in after
    assert SEGMENTS > 1
    lines = [f["line"] for f in r.json["findings"] if f["rule"] == "schema/invalid"]
    assert lines == [i for i, line in enumerate(text.splitlines(), 1) if line.startswith("unknownField")], lines
    assert len(lines) == 3
    code_before, before, _ = _run_baseline(_baseline_code(tmp_path / "baseline", BEFORE_STREAM), mdir, *args)
    assert r.code == code_before
    _same_findings(r.json["findings"], before["findings"])


#: kubeconform faults that only the FIFOs after the first show: (what the fake does to its
#: arguments, what to its report), words of the message
LATER_SEGMENT_FAULTS = {
    "reads only the first FIFO": ("args[:] = args[:args.index(next(a for a in args if a.endswith('/1.json')))]", "pass",
                                  ["without a result for 2 of the 3 objects"]),
    "drops the second FIFO's results": ("pass", "report['resources'] = [r for r in report['resources'] "
                                        "if not r['filename'].endswith('/1.json')]", ["without a result for 2 of the 3"]),
    "drops an empty FIFO's result": ("pass", "report['resources'] = [r for r in report['resources'] "
                                     "if not r['filename'].endswith('/3.json')]", ["without a result for the empty file 3.json"]),
}


@pytest.mark.parametrize("fault", LATER_SEGMENT_FAULTS)
def test_a_kubeconform_that_fails_on_a_later_segment_is_exit_2(tmp_path: Path, mdir: Path, fault: str):
    """The first FIFO is read and reported in full; a later one is not: the run is exit 2 all the same."""
    on_args, on_report, words = LATER_SEGMENT_FAULTS[fault]
    fake = (f'exec "{sys.executable}" - "$@" <<\'EOF\'\n'
            'import json, subprocess, sys\n'
            f'args = sys.argv[1:]\n{on_args}\n'
            f'p = subprocess.run([{str(TOOLS / "kubeconform")!r}] + args, capture_output=True)\n'
            f'report = json.loads(p.stdout)\n{on_report}\n'
            'json.dump(report, sys.stdout)\nsys.exit(p.returncode)\nEOF')
    (tmp_path / "twins.yaml").write_text(_twins(2, set()) + "---\n" + _twins(1, set()).replace("twin", "single"))
    env = tool_env(str(fake_bin(tmp_path, kubeconform=fake)))
    assert_cannot_run(run_cli("--manifests", str(tmp_path / "twins.yaml"), "--format", "json", cwd=mdir, env=env,
                              timeout=120), "kubeconform", *words)


@pytest.mark.parametrize("fault", [f for f in KUBECONFORM_FAULTS])
@pytest.mark.parametrize("file", ["plain.yaml", "hostile.yaml"])
def test_a_failing_kubeconform_on_the_stream_is_exit_2(tmp_path: Path, mdir: Path, fault: str, file: str):
    script, words = KUBECONFORM_FAULTS[fault]
    env = tool_env(str(fake_bin(tmp_path, kubeconform=script)))
    assert_cannot_run(run_cli("--manifests", file, "--format", "json", cwd=mdir, env=env), "kubeconform", *words)


def test_a_kubeconform_that_stops_reading_is_exit_2(tmp_path: Path, mdir: Path):
    """It reads a little of its stream, then reports nothing for the rest: the writer gets EPIPE,
    the run does not hang, and the objects without a result are exit 2."""
    script = 'head -c 100 "$1" > /dev/null\necho \'{"resources": []}\'\nexit 0'
    env = tool_env(str(fake_bin(tmp_path, kubeconform=script)))
    assert_cannot_run(run_cli("--manifests", "plain.yaml", "--format", "json", cwd=mdir, env=env, timeout=60),
                      "kubeconform", "without a result for")


def test_a_kubeconform_that_never_opens_its_stream_is_exit_2(tmp_path: Path, mdir: Path):
    env = tool_env(str(fake_bin(tmp_path, kubeconform='echo \'{"resources": []}\'\nexit 0')))
    assert_cannot_run(run_cli("--manifests", "plain.yaml", "--format", "json", cwd=mdir, env=env, timeout=60),
                      "kubeconform", "without a result for")


def test_kubeconform_runs_with_a_larger_gc_target_and_the_cores_left(tmp_path: Path, mdir: Path):
    """Change 28: kubeconform runs with GOGC=400 unless the user set a GOGC, and on the stream
    with `-n` = the cores this process leaves it (one on two). Neither changes a verdict: the
    findings equal those of kubeconform run with Go's default GOGC and its default workers."""
    log = tmp_path / "kubeconform.log"
    logged = tool_env(str(fake_bin(tmp_path / "logged", kubeconform=f'echo "GOGC=$GOGC $*" >> "{log}"\nexec {REAL_KUBECONFORM}')))
    # the same kubeconform without -n and at GOGC=100 (sh: rebuild "$@" without the pair "-n X")
    plain = tool_env(str(fake_bin(tmp_path / "plain", kubeconform=(
        'n=$#; skip=0\nfor a in "$@"; do\n  if [ $skip = 1 ]; then skip=0\n  elif [ "$a" = -n ]; then skip=1\n'
        '  else set -- "$@" "$a"; fi\ndone\nshift $n\n'
        f'GOGC=100 exec {REAL_KUBECONFORM}'))))
    args = ("--manifests", "plain.yaml", "hostile.yaml", "--format", "json")
    runs = [run_cli(*args, cwd=mdir, env=env) for env in (logged, plain, logged | {"GOGC": "150"})]
    assert [r.code for r in runs] == [1, 1, 1], [r.err for r in runs]
    assert runs[0].json["findings"] == runs[1].json["findings"] == runs[2].json["findings"]
    lines = log.read_text().splitlines()
    half = len(lines) // 2               # the stream (hostile.yaml's twins in segments of their own) and the run after it, twice
    assert len(lines) == 2 * half and half == 2, lines
    assert [line.split()[0] for line in lines] == ["GOGC=400"] * half + ["GOGC=150"] * half
    workers = max(1, len(os.sched_getaffinity(0)) - 1)
    streams = [line for line in lines if " -n " in line]
    assert len(streams) == 2 * (half - 1) and all(f" -n {workers} " in line for line in streams)   # the stream only
