"""scripts/score_peers.py on miniature checkouts laid out like Polaris, kube-linter and kube-score:
the real CLI runs on every case, the labels are read the way the real corpora state them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, tool_env

DEPLOY = """apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: web:1.0
        env: [{name: A, value: "1"}, {name: %s, value: "2"}]
"""


def corpora(tmp: Path) -> dict[str, Path]:
    polaris = tmp / "polaris/test/checks/sensitiveConfigmapContent"
    polaris.mkdir(parents=True)
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {%s: x}\n"
    (polaris / "failure.key_password.yaml").write_text(cm % "DB_PASSWORD")
    (polaris / "success.plain.yaml").write_text(cm % "LOG_LEVEL")
    (polaris / "mutated.yaml").write_text(cm % "DB_PASSWORD")  # not a label
    kl = tmp / "kube-linter"
    (kl / "tests/checks").mkdir(parents=True)
    (kl / "e2etests").mkdir()
    (kl / "tests/checks/duplicate-env-var.yaml").write_text(DEPLOY % ("app", "A") + "---\n" + DEPLOY % ("ok", "B"))
    (kl / "e2etests/bats-tests.sh").write_text(
        '@test "duplicate-env-var" {\n  tmp="tests/checks/duplicate-env-var.yaml"\n'
        '  cmd="${KUBE_LINTER_BIN} lint --include duplicate-env-var --format json ${tmp}"\n'
        '  [[ "${message1}" == "Deployment: Duplicate environment variable A" ]]\n'
        '  [[ "${message2}" == "DeploymentConfig: Duplicate environment variable A" ]]\n'
        '  [[ "${count}" == "2" ]]\n}\n')
    ks = tmp / "kube-score"
    (ks / "score/testdata").mkdir(parents=True)
    hpa = ("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nspec:\n"
           "  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: %s}\n  maxReplicas: 3\n")
    (ks / "score/testdata/hpa-no-target.yaml").write_text(hpa % "missing")
    (ks / "score/testdata/hpa-target.yaml").write_text(hpa % "app" + "---\n" + DEPLOY % ("app", "B"))
    (ks / "score/hpa_test.go").write_text(
        'testExpectedScore(t, "hpa-no-target.yaml", "HorizontalPodAutoscaler has target", scorecard.GradeCritical)\n'
        'testExpectedScore(t, "hpa-target.yaml", "HorizontalPodAutoscaler has target", scorecard.GradeAllOK)\n')
    return {"polaris": tmp / "polaris", "kube-linter": kl, "kube-score": ks}


def test_scores_each_corpus_by_its_labels(tmp_path):
    dirs = corpora(tmp_path)
    p = subprocess.run([sys.executable, str(ROOT / "scripts/score_peers.py"), "--polaris", str(dirs["polaris"]),
                        "--kube-linter", str(dirs["kube-linter"]), "--kube-score", str(dirs["kube-score"])],
                       capture_output=True, text=True, env=tool_env(), timeout=600)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "sensitiveConfigmapContent" in out and "mutated.yaml" not in out
    # kube-linter: 2 reports, one on a DeploymentConfig, so 1 expected and caught
    assert "duplicate-env-var" in out and "1 report(s) on OpenShift kinds not counted" in out
    assert "Overall recall on shared checks: 3/3 = 100.0 %" in out, out


def test_a_missing_checkout_is_exit_2(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "scripts/score_peers.py"), "--polaris", str(tmp_path)],
                       capture_output=True, text=True, env=tool_env(), timeout=60)
    assert p.returncode == 2 and "not a polaris checkout" in p.stderr
