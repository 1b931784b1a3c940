"""The gate fails closed (issue 9): fake helm, kubeconform and git first on PATH crash, hang, die by a
signal, exit non-zero with and without output, print garbage or leave objects without a result, and
every one of them is exit 2 with a message naming the tool; the real tools still pass the real repo
(test_repo.py). Also: Kubernetes version spellings, bounded app-of-apps, the deadline, signals."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import CLI, ROOT, TOOLS, run_cli, tool_env
from e2e.harness import copy_repo

GOOD = ROOT / "tests" / "manifests" / "good.yaml"


def fake_bin(tmp_path: Path, **scripts: str) -> Path:
    """A bin folder with the pinned tools, where each named tool is replaced by a shell script."""
    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for tool in ("helm", "kubeconform", "kustomize"):
        if tool not in scripts:
            (bindir / tool).symlink_to(TOOLS / tool)
    for tool, body in scripts.items():
        (bindir / tool).write_text("#!/bin/sh\n" + body + "\n")
        (bindir / tool).chmod(0o755)
    return bindir


def validate(tmp_path: Path, *args: str, repo: Path = ROOT, **scripts: str):
    env = tool_env(str(fake_bin(tmp_path, **scripts)))
    return run_cli("--repo", str(repo), "--no-cache", "--format", "json", *args, env=env)


def assert_cannot_run(r, tool: str, *words: str) -> None:
    assert r.code == 2, f"exit {r.code}\n{r.out}\n{r.err}"
    assert "Traceback" not in r.err, r.err
    assert r.err.startswith(f"gitops-validate: {tool} "), r.err
    for w in words:
        assert w in r.err, r.err


# --- kubeconform -----------------------------------------------------------------------------

REAL_KUBECONFORM = f'"{TOOLS / "kubeconform"}" "$@"'
KUBECONFORM_FAULTS = {
    "crash": ('echo "panic: simulated crash" >&2\necho "goroutine 1 [running]:" >&2\nexit 2',
              ["exited with status 2", "panic: simulated crash"]),
    "exit non-zero, no output": ("exit 3", ["exited with status 3", "(no stderr)"]),
    "exit 1 with a message, no report": ('echo "open /nowhere: no such file" >&2\nexit 1',
                                         ["not its JSON report", "open /nowhere"]),
    "killed by a signal": ("kill -9 $$", ["was killed by SIGKILL"]),
    "garbage output": ('echo "this is not JSON"\nexit 0', ["not its JSON report"]),
    "results missing for some objects": (
        f'{REAL_KUBECONFORM} | "{sys.executable}" -c "import json,sys; d=json.load(sys.stdin); '
        f'd[\'resources\']=d[\'resources\'][1:]; json.dump(d, sys.stdout)"\nexit 0',
        ["without a result for 1 of the"]),
    "no results at all (ignores its arguments)": ('echo \'{"resources": []}\'\nexit 0', ["without a result for"]),
    "a result twice": (
        f'{REAL_KUBECONFORM} | "{sys.executable}" -c "import json,sys; d=json.load(sys.stdin); '
        f'd[\'resources\'].append(d[\'resources\'][0]); json.dump(d, sys.stdout)"\nexit 0',
        ["unexpected result"]),
    "exit 0 while reporting invalid objects": (
        f'{REAL_KUBECONFORM} | sed "s/statusValid/statusInvalid/"\nexit 0', ["contradicts its results"]),
}


@pytest.mark.parametrize("fault", KUBECONFORM_FAULTS)
def test_failing_kubeconform_is_exit_2(tmp_path, fault):
    script, words = KUBECONFORM_FAULTS[fault]
    assert_cannot_run(validate(tmp_path, kubeconform=script), "kubeconform", *words)


def test_failing_kubeconform_in_manifest_mode_is_exit_2(tmp_path):
    env = tool_env(str(fake_bin(tmp_path, kubeconform="exit 3")))
    assert_cannot_run(run_cli("--manifests", str(GOOD), env=env, cwd=tmp_path), "kubeconform", "exited with status 3")


def test_hanging_kubeconform_stops_at_the_deadline(tmp_path):
    env = tool_env(str(fake_bin(tmp_path, kubeconform="sleep 300")))
    r = run_cli("--manifests", str(GOOD), "--deadline", "2", env=env, cwd=tmp_path, timeout=60)
    assert_cannot_run(r, "kubeconform", "deadline")


# --- helm --------------------------------------------------------------------------------------

HELM_FAULTS = {
    "crash": ('echo "panic: runtime error: invalid memory address" >&2\nexit 2',
              ["exited with status 2", "panic: runtime error"]),
    "exit 1 without output": ("exit 1", ["exited with status 1", "(no stderr)"]),
    "exit 1 without helm's Error: line": ('echo "fatal: something odd" >&2\nexit 1', ["something odd"]),
    "killed by a signal": ("kill -TERM $$", ["was killed by SIGTERM"]),
    "garbage output": ("printf 'kind: [unclosed\\n'\nexit 0", ["does not parse"]),
    "a scalar instead of objects": ("echo 'just some words'\nexit 0", ["does not parse"]),
    "output that is not UTF-8": ("printf 'a: \\377\\376\\n'\nexit 0", ["not UTF-8"]),
}


@pytest.mark.parametrize("fault", HELM_FAULTS)
def test_failing_helm_is_exit_2(tmp_path, fault):
    script, words = HELM_FAULTS[fault]
    assert_cannot_run(validate(tmp_path, helm=script), "helm", *words)


def test_a_chart_error_stays_a_finding(tmp_path):
    """helm's own user-error path (exit 1, an `Error:` line) is the chart's fault: a finding, exit 1."""
    r = validate(tmp_path, helm='echo "Error: execution error at (x/templates/a.yaml:1:3): boom" >&2\nexit 1')
    assert r.code == 1, r.out + r.err
    assert "values/render-failed" in r.rules(), r.json["findings"]


def test_bad_yaml_in_a_charts_crds_folder_stays_a_finding(tmp_path):
    """helm prints crds/ files as they are, unparsed: bad YAML there is the chart's fault, not helm's."""
    repo = chain_repo(tmp_path)
    (repo / "chain" / "templates" / "app.yaml").unlink()
    (repo / "chain" / "crds").mkdir()
    (repo / "chain" / "crds" / "bad.yaml").write_text("a: [\n")
    r = run_cli("--repo", str(repo), "--format", "json", "--no-cache")
    assert r.code == 1, r.out + r.err
    assert any(f["rule"] == "yaml/syntax" and f["file"] == "chain/crds/bad.yaml" for f in r.json["findings"]), r.json


#: What Argo CD's repo-server (and kubectl) make no object of: a List whose items are empty or null
#: (reposerver/repository.go, IsList/isNullList). kubeconform reported one result naming no object.
EMPTY_LISTS = ("apiVersion: v1\nkind: List\nitems: []\n",
               "apiVersion: v1\nkind: List\nmetadata: {name: nothing}\nitems: []\n",
               "apiVersion: v1\nkind: ConfigMapList\nitems: null\n")


def test_an_empty_list_a_chart_renders_is_zero_objects(tmp_path):
    """Not exit 2 (it was): the same findings, exit code and object count as without the Lists."""
    repo = chain_repo(tmp_path)
    (repo / "chain" / "templates" / "app.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept}\ndata: {a: 1}\n")   # a finding: data must be text
    without = run_cli("--repo", str(repo), "--format", "json", "--no-cache")
    assert without.code == 1 and without.json["summary"]["objects"] > 0, without.out + without.err
    (repo / "chain" / "templates" / "lists.yaml").write_text("---\n".join(EMPTY_LISTS))
    r = run_cli("--repo", str(repo), "--format", "json", "--no-cache")
    assert r.code == without.code, r.out + r.err
    assert r.json["findings"] == without.json["findings"]
    assert r.json["summary"]["objects"] == without.json["summary"]["objects"]


def test_hanging_helm_is_stopped_with_its_whole_process_group(tmp_path):
    pids = tmp_path / "pids"
    # helm and a child of its own, both hanging; the child must not outlive the run
    script = f'sleep 300 &\necho $! >> {pids}\nsleep 300'
    r = validate(tmp_path, "--render-timeout", "2", helm=script)
    assert_cannot_run(r, "helm", "did not finish within 2s", "process group")
    children = [int(p) for p in pids.read_text().split()]
    assert children
    time.sleep(0.2)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2], \
            f"helm's child {pid} outlived the run"


# --- git ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("script,words", [
    ("kill -9 $$", ["was killed by SIGKILL"]),
    ('echo "error: index file corrupt" >&2\nexit 1', ["exited with status 1", "index file corrupt"]),
])
def test_failing_git_is_exit_2(tmp_path, script, words):
    assert_cannot_run(validate(tmp_path, git=script), "git", *words)


# --- Kubernetes versions -------------------------------------------------------------------------

UNKNOWN_FIELD = ("  type: {{ .Values.service.type }}\n", "  type: {{ .Values.service.type }}\n  typo: 1\n")


def plant_unknown_field(repo: Path) -> None:
    p = repo / "apps/todo-backend/templates/service.yaml"
    text = p.read_text()
    assert UNKNOWN_FIELD[0] in text
    p.write_text(text.replace(*UNKNOWN_FIELD, 1))


@pytest.mark.parametrize("version", ["1.35", "v1.35", "1.35.1", "v1.35.1"])
def test_every_version_spelling_still_checks_the_schema(repo_copy, version):
    """`--kubernetes-version 1.35` (the X.Y of --help) once made kubeconform refuse its arguments: exit 0."""
    plant_unknown_field(repo_copy)
    r = run_cli("--repo", str(repo_copy), "--format", "json", "--kubernetes-version", version)
    assert r.code == 1, r.out + r.err
    assert any(f["rule"] == "schema/invalid" and "typo" in f["message"] for f in r.json["findings"]), r.json


@pytest.mark.parametrize("where", ["config", "cluster.yaml"])
def test_short_versions_in_the_config_and_cluster_yaml(repo_copy, where):
    plant_unknown_field(repo_copy)
    cluster = repo_copy / "clusters/minikube/cluster.yaml"
    text = cluster.read_text()
    assert "kubernetesVersion: v1.35.1\n" in text
    if where == "config":
        cluster.write_text(text.replace("kubernetesVersion: v1.35.1\n", ""))
        cfg = repo_copy / ".gitops-validator.yaml"
        cfg.write_text(cfg.read_text().replace('kubernetesVersion: "1.35.1"', 'kubernetesVersion: "1.35"'))
    else:
        cluster.write_text(text.replace("kubernetesVersion: v1.35.1", 'kubernetesVersion: "1.35"'))
    r = run_cli("--repo", str(repo_copy), "--format", "json")
    assert r.code == 1, r.out + r.err
    assert "schema/invalid" in r.rules()


@pytest.mark.parametrize("where,words", [
    ("flag", ["--kubernetes-version", "'1.35-rc'"]),
    ("config", [".gitops-validator.yaml", "kubernetesVersion"]),
    ("cluster.yaml", ["clusters/minikube/cluster.yaml", "'latest'"]),
])
def test_a_version_that_is_not_one_is_exit_2(repo_copy, where, words):
    args = []
    if where == "flag":
        args = ["--kubernetes-version", "1.35-rc"]
    elif where == "config":
        cfg = repo_copy / ".gitops-validator.yaml"
        cfg.write_text(cfg.read_text().replace('kubernetesVersion: "1.35.1"', 'kubernetesVersion: "one"'))
    else:
        cluster = repo_copy / "clusters/minikube/cluster.yaml"
        cluster.write_text(cluster.read_text().replace("kubernetesVersion: v1.35.1", "kubernetesVersion: latest"))
    r = run_cli("--repo", str(repo_copy), *args)
    assert r.code == 2, r.out + r.err
    assert "Traceback" not in r.err and all(w in r.err for w in words), r.err


# --- bounds ------------------------------------------------------------------------------------------

CHAIN_APP = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: argocd
spec:
  project: default
  destination: {{server: "https://kubernetes.default.svc", namespace: chain}}
  source:
    repoURL: https://example.com/chain.git
    path: chain
    helm:
      parameters:
        - name: n
          value: "{value}"
"""


def chain_repo(tmp_path: Path, config: str = "") -> Path:
    """An app-of-apps whose child names grow at each level: chain-0 renders chain-1 renders chain-2 ..."""
    repo = tmp_path / "repo"
    (repo / "chain" / "templates").mkdir(parents=True)
    (repo / "chain" / "Chart.yaml").write_text("apiVersion: v2\nname: chain\nversion: 0.1.0\n")
    (repo / "chain" / "values.yaml").write_text("n: 0\n")
    (repo / "chain" / "templates" / "app.yaml").write_text(
        CHAIN_APP.format(name="chain-{{ add1 .Values.n }}", value="{{ add1 .Values.n }}"))
    (repo / "root.yaml").write_text(CHAIN_APP.format(name="chain-0", value="0"))
    if config:
        (repo / ".gitops-validator.yaml").write_text(config)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def chain_run(repo: Path):
    return run_cli("--repo", str(repo), "--format", "json", "--no-cache", "-v", timeout=300)


def test_an_endless_app_of_apps_stops_at_the_default_depth(tmp_path):
    r = chain_run(chain_repo(tmp_path))
    assert r.code == 1, r.out + r.err
    deep = [f for f in r.json["findings"] if f["rule"] == "argocd/app-of-apps-too-deep"]
    assert len(deep) == 1 and "'chain-11'" in deep[0]["message"] and "limit of 10" in deep[0]["message"], deep
    assert deep[0]["file"] == "chain/templates/app.yaml"
    assert "11 helm render(s)" in r.err


def test_app_of_apps_depth_is_configurable(tmp_path):
    r = chain_run(chain_repo(tmp_path, "limits: {maxAppDepth: 2}\n"))
    assert r.code == 1
    deep = [f for f in r.json["findings"] if f["rule"] == "argocd/app-of-apps-too-deep"]
    assert len(deep) == 1 and "'chain-3'" in deep[0]["message"]
    assert "3 helm render(s)" in r.err


def test_number_of_applications_is_bounded(tmp_path):
    r = chain_run(chain_repo(tmp_path, "limits: {maxApplications: 4}\n"))
    assert r.code == 1
    many = [f for f in r.json["findings"] if f["rule"] == "argocd/too-many-applications"]
    assert len(many) == 1 and "more than 4 Applications" in many[0]["message"] and "'chain-4'" in many[0]["message"]
    assert r.json["summary"]["apps"] == 4


def test_bad_limits_in_the_config_are_exit_2(tmp_path):
    r = chain_run(chain_repo(tmp_path, "limits: {maxAppDepth: 0}\n"))
    assert r.code == 2 and "limits/maxAppDepth" in r.err, r.err


def test_the_whole_run_has_a_deadline(tmp_path):
    # this repo renders its Argo CD install with kustomize first: a hanging kustomize meets the deadline
    r = validate(tmp_path / "a", "--deadline", "2", kustomize="sleep 300")
    assert_cannot_run(r, "kustomize", "deadline (2s")
    # a repo without an install: a hanging helm meets it
    repo = tmp_path / "repo"
    copy_repo(repo)
    facts = repo / "clusters/minikube/cluster.yaml"
    facts.write_text("".join(line for line in facts.read_text().splitlines(keepends=True)
                             if not line.startswith("argocdInstall")))
    r = validate(tmp_path / "b", "--deadline", "2", repo=repo, helm="sleep 300")
    assert_cannot_run(r, "helm", "deadline (2s")


def test_a_run_leaves_no_deadline_and_the_collector_as_it_found_it(tmp_path, monkeypatch):
    """The deadline and the collector switch are one run's: code called after it in the same
    process (a library user, the next test in a worker) inherits neither."""
    import gc

    from gitops_validate import config as config_mod, pipeline, tools
    from gitops_validate.rules import REGISTRY
    for k, v in tool_env().items():
        monkeypatch.setenv(k, v)
    repo = tmp_path / "repo"
    copy_repo(repo)
    cfg = config_mod.load(repo / ".gitops-validator.yaml", set(REGISTRY))
    assert gc.isenabled()
    pipeline.run(pipeline.Options(repo=repo, config=cfg, cache_dir=None))
    assert tools._deadline is None and gc.isenabled()
    gc.disable()   # a caller that turned it off keeps it off
    try:
        pipeline.run(pipeline.Options(repo=repo, config=cfg, cache_dir=None))
        assert tools._deadline is None and not gc.isenabled()
    finally:
        gc.enable()


# --- signals -------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("hanging", ["helm", "kubeconform"])
def test_a_signal_stops_the_tools_and_leaves_nothing_behind(tmp_path, signum, code, hanging):
    pids = tmp_path / "pids"
    # the hanging tool and a child of its own both record their pid, then wait
    script = f"sleep 300 &\necho $! >> {pids}\necho $$ >> {pids}\nwait"
    env = tool_env(str(fake_bin(tmp_path, **{hanging: script})))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    args = ["--manifests", str(GOOD)] if hanging == "kubeconform" else ["--repo", str(ROOT), "--no-cache"]
    proc = subprocess.Popen([str(CLI), *args], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until the tool runs (at most a minute)
            if pids.is_file() and len(pids.read_text().split()) >= 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"{hanging} never started")
        proc.send_signal(signum)
        # far below the tools' own timeouts (90 s, 120 s): the signal, not a timeout, ended the run
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert err == f"gitops-validate: interrupted by {signal.Signals(signum).name}\n"
    time.sleep(0.2)
    for pid in map(int, pids.read_text().split()):
        alive = Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        assert not alive, f"{hanging} process {pid} outlived the run"
    assert list(tmp.iterdir()) == [], "temporary files left behind"


# --- API server limits ------------------------------------------------------------------------------

def manifests_run(tmp_path: Path, text: str):
    f = tmp_path / "m.yaml"
    f.write_text(text)
    return run_cli("--manifests", "--format", "json", str(f), cwd=tmp_path)


def configmap(annotations: str = "{}", data: str = "{}", kind: str = "ConfigMap", field: str = "data") -> str:
    return f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: big\n  annotations: {annotations}\n{field}: {data}\n"


TOO_LARGE = {  # one byte over each limit; the texts are built here, never committed
    "annotations over 256 KiB, keys counted":
        (lambda: configmap(annotations="{a: %s, b: %s}" % ("x" * (128 * 1024 - 1), "y" * (128 * 1024))),
         "schema/annotations-too-large"),
    "ConfigMap data over 1 MiB": (lambda: configmap(data="{a: %s, b: %s}" % ("x" * (512 * 1024), "y" * (512 * 1024 + 1))),
                                  "schema/object-too-large"),
    "Secret data over 1 MiB decoded": (lambda: configmap(data="{a: %s}" % ("QUFB" * 349_526), kind="Secret"),
                                       "schema/object-too-large"),
    "Secret stringData over 1 MiB": (lambda: configmap(data="{a: %s}" % ("z" * (1024 * 1024 + 1)), kind="Secret",
                                                       field="stringData"), "schema/object-too-large"),
    ".nan in an annotation": (lambda: configmap(annotations="{ratio: .nan}"), "schema/non-finite-number"),
    ".inf as replicas": (lambda: GOOD.read_text().replace("replicas: 2", "replicas: .inf", 1), "schema/non-finite-number"),
}
WITHIN_LIMITS = {
    "annotations of 256 KiB minus 2 bytes": lambda: configmap(
        annotations="{a: %s, b: %s}" % ("x" * (128 * 1024 - 1), "y" * (128 * 1024 - 1))),
    "ConfigMap data of exactly 1 MiB": lambda: configmap(data="{a: %s, b: %s}" % ("x" * (512 * 1024), "y" * (512 * 1024))),
    "Secret data of 1.33 MiB as base64, 1 MiB less a byte decoded": lambda: configmap(
        data="{a: %s}" % ("QUFB" * 349_525), kind="Secret"),
    "a quoted '.nan'": lambda: configmap(annotations="{ratio: '.nan'}"),
}


@pytest.mark.parametrize("case", TOO_LARGE)
def test_what_the_api_server_refuses_is_an_error(tmp_path, case):
    make, rule = TOO_LARGE[case]
    r = manifests_run(tmp_path, make())
    assert r.code == 1, r.out[:2000] + r.err
    hits = [f for f in r.json["findings"] if f["rule"] == rule]
    assert len(hits) == 1 and hits[0]["line"], r.json["findings"]


@pytest.mark.parametrize("case", WITHIN_LIMITS)
def test_up_to_the_api_server_limits_is_fine(tmp_path, case):
    r = manifests_run(tmp_path, WITHIN_LIMITS[case]())
    assert r.code in (0, 1), r.err  # a Secret in git is an error of its own (secrets/data-in-git)
    assert not {"schema/annotations-too-large", "schema/object-too-large", "schema/non-finite-number",
                "schema/invalid"} & r.rules(), r.json["findings"]
