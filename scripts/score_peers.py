#!/usr/bin/env python3
"""Score gitops-validate on the labelled test corpora of Polaris, kube-linter and kube-score.

    python scripts/score_peers.py --polaris DIR --kube-linter DIR --kube-score DIR [--markdown]

Each DIR is a checkout of that project (the corpora are read, never copied into this repo). For every
labelled case of a check we share, the case's file is validated alone with
``gitops-validate --manifests FILE --format json`` and only the findings of the mapped rules count:

- Polaris ``test/checks/<check>/{failure,success}.*.yaml``: a failure file must get a finding, a
  success file none.
- kube-linter ``tests/checks/*.yml`` with the report count that ``e2etests/bats-tests.sh`` expects for
  ``--include <check>``: as many findings, less the reports on OpenShift kinds (the expected messages
  start with the object's kind).
- kube-score ``testExpectedScore(t, "<file>", "<check>", scorecard.Grade…)`` in ``score/*_test.go``
  (the cases that name a testdata file): a grade other than AllOK must get a finding, AllOK none.

Recall per shared check = expected findings we produce / expected findings. Every disagreement (a
miss, or a finding on a case labelled clean) is listed with our findings so a reason can be given.
Exit 0 always when the corpora could be read (it is a measurement); 2 when a checkout is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RESOURCES = ("resources/missing-requests", "resources/missing-limits")


@dataclass(frozen=True)
class Shared:
    """Our rules that catch a peer's check; ``about`` keeps only findings whose message names it
    (a peer's per-resource check against our per-container rule), ``kinds`` only findings on
    those kinds (a schema rule counts for an Ingress check only on the Ingress)."""
    rules: tuple[str, ...]
    about: str | None = None
    kinds: tuple[str, ...] | None = None

    def counts(self, f: dict) -> bool:
        return (f["rule"] in self.rules and (self.about is None or self.about in f["message"])
                and (self.kinds is None or (f.get("object") or {}).get("kind") in self.kinds))


#: Kinds outside the Kubernetes API we check (OpenShift): the peers' reports on them are not counted.
OUT_OF_SCOPE_KINDS = frozenset({"DeploymentConfig"})

#: Peer check -> our rules that catch the same mistake.
POLARIS = {
    "cpuLimitsMissing": Shared(("resources/missing-limits",), about="cpu"),
    "memoryLimitsMissing": Shared(("resources/missing-limits",), about="memory"),
    "cpuRequestsMissing": Shared(("resources/missing-requests",), about="cpu"),
    "memoryRequestsMissing": Shared(("resources/missing-requests",), about="memory"),
    "livenessProbeMissing": Shared(("probes/missing-liveness",)),
    "readinessProbeMissing": Shared(("probes/missing-readiness",)),
    "tagNotSpecified": Shared(("images/latest-tag",)),
    "hostIPCSet": Shared(("security/host-namespaces",)),
    "hostNetworkSet": Shared(("security/host-namespaces",)),
    "hostPIDSet": Shared(("security/host-namespaces",)),
    "runAsPrivileged": Shared(("security/privileged",)),
    "privilegeEscalationAllowed": Shared(("security/privilege-escalation",)),
    "runAsRootAllowed": Shared(("security/run-as-non-root",)),
    "notReadOnlyRootFilesystem": Shared(("security/read-only-root-filesystem",)),
    "dangerousCapabilities": Shared(("security/capabilities",)),
    "insecureCapabilities": Shared(("security/capabilities",)),
    "sensitiveConfigmapContent": Shared(("secrets/configmap-data",)),
    "sensitiveContainerEnvVar": Shared(("secrets/literal-value",)),
}
KUBE_LINTER = {
    "dangling-horizontalpodautoscaler": Shared(("refs/hpa-target",)),
    "dangling-ingress": Shared(("refs/ingress-backend",)),
    "dangling-service": Shared(("refs/service-selector",)),
    "duplicate-env-var": Shared(("schema/duplicate-env",)),
    "env-var-secret": Shared(("secrets/literal-value",)),
    "host-ipc": Shared(("security/host-namespaces",)),
    "host-network": Shared(("security/host-namespaces",)),
    "host-pid": Shared(("security/host-namespaces",)),
    "invalid-target-ports": Shared(("schema/port-name", "schema/port-range")),
    "latest-tag": Shared(("images/latest-tag",)),
    "liveness-port": Shared(("probes/unknown-port",)),
    "readiness-port": Shared(("probes/unknown-port",)),
    "startup-port": Shared(("probes/unknown-port",)),
    "mismatching-selector": Shared(("refs/workload-selector",)),
    "no-liveness-probe": Shared(("probes/missing-liveness",)),
    "no-readiness-probe": Shared(("probes/missing-readiness",)),
    "no-read-only-root-fs": Shared(("security/read-only-root-filesystem",)),
    "non-existent-service-account": Shared(("refs/missing-serviceaccount",)),
    "privilege-escalation-container": Shared(("security/privilege-escalation",)),
    "privileged-container": Shared(("security/privileged",)),
    "run-as-non-root": Shared(("security/run-as-non-root",)),
    "unset-cpu-requirements": Shared(RESOURCES, about="cpu"),
    "unset-memory-requirements": Shared(RESOURCES, about="memory"),
    "no-extensions-v1beta": Shared(("schema/removed-api",)),
    "drop-net-raw-capability": Shared(("security/capabilities",)),
}
KUBE_SCORE = {
    "Container Image Tag": Shared(("images/latest-tag",)),
    "Container Resources": Shared(RESOURCES + ("resources/request-exceeds-limit",)),
    # an Ingress in a removed API version, or with its fields, is rejected before it routes anywhere
    "Ingress targets Service": Shared(("refs/ingress-backend", "schema/removed-api", "schema/invalid"),
                                      kinds=("Ingress",)),
    "HorizontalPodAutoscaler has target": Shared(("refs/hpa-target",)),
    "Service Targets Pod": Shared(("refs/service-selector", "refs/target-port")),
    "Pod Probes": Shared(("probes/missing-liveness", "probes/missing-readiness")),
    "Pod Probes Identical": Shared(("probes/identical",)),
    "StatefulSet Pod Selector labels match template metadata labels": Shared(("refs/workload-selector",)),
    "Deployment Pod Selector labels match template metadata labels": Shared(("refs/workload-selector",)),
}

_OPENSHIFT = "their scope: an OpenShift DeploymentConfig, which this validator does not check"
_DROP_ALL = ("our convention: security/capabilities asks for `drop: [ALL]`, which also drops NET_RAW; "
             "dropping NET_RAW alone still fails it")
#: Why we disagree with a labelled case: (corpus, check, file or "*") -> reason, shown in the report.
REASONS: dict[tuple[str, str, str], str] = {
    ("polaris", "livenessProbeMissing", "*"): "our convention: a plain Pod is checked only when it restarts and a "
        "Service selects it (otherwise it is meant to finish, like a Job); this one has no Service",
    ("polaris", "readinessProbeMissing", "*"): "our convention: a plain Pod is checked only when it restarts and a "
        "Service selects it; this one has no Service, so nothing routes traffic to it",
    ("polaris", "dangerousCapabilities", "*"): _DROP_ALL.replace("NET_RAW", "every capability") +
        " (their success case adds no dangerous capability but drops nothing)",
    ("polaris", "insecureCapabilities", "*"): "our convention: security/capabilities asks for `drop: [ALL]` "
        "(Pod Security Standards restricted); their success cases drop only the insecure ones",
    ("kube-linter", "drop-net-raw-capability", "*"): _DROP_ALL + " (their `dont-fire` Deployment drops NET_RAW only)",
    ("kube-linter", "invalid-target-ports", "*"): "we also report the targetPort 123456 that is out of range "
        "(schema/port-range); their check covers names only. The API server rejects both",
    ("kube-linter", "unset-cpu-requirements", "*"): "one report of theirs covers requests and limits; we report "
        "the missing request and the missing limit separately",
    ("kube-linter", "unset-memory-requirements", "*"): "one report of theirs covers requests and limits; we "
        "report the missing request and the missing limit separately",
    ("kube-score", "Ingress targets Service", "score/testdata/ingress-targets-service.yaml"):
        "their fixture uses extensions/v1beta1 Ingress, removed in Kubernetes 1.22: a 1.35 cluster refuses it",
    ("kube-score", "Ingress targets Service", "score/testdata/ingress-networkingv1beta1-targets-service.yaml"):
        "their fixture uses networking.k8s.io/v1beta1 Ingress, removed in Kubernetes 1.22: a 1.35 cluster refuses it",
    ("kube-score", "Ingress targets Service", "score/testdata/ingress-networkingv1-targets-service.yaml"):
        "their fixture's bug: a networking.k8s.io/v1 path without the required `pathType`, which the API "
        "server rejects",
    ("kube-score", "Pod Probes", "*"): "our convention: every serving container has its own probes; kube-score "
        "judges the pod as a whole (one container with probes is enough)",
    **{("kube-linter", check, "*"): _OPENSHIFT for check in (
        "env-var-secret", "host-ipc", "host-network", "host-pid", "latest-tag", "mismatching-selector",
        "no-liveness-probe", "no-read-only-root-fs", "no-readiness-probe", "non-existent-service-account",
        "privilege-escalation-container", "privileged-container", "run-as-non-root")},
}


@dataclass
class Case:
    corpus: str
    check: str
    file: Path
    shared: Shared
    expected: int                      # findings expected (0: the case is labelled clean)
    label: str                         # how the peer labels it
    out_of_scope: int = 0              # reports on kinds we do not check (not counted)
    found: list[dict] = field(default_factory=list)

    @property
    def caught(self) -> int:
        return min(len(self.found), self.expected)

    @property
    def agrees(self) -> bool:
        return len(self.found) >= self.expected if self.expected else not self.found


def polaris_cases(root: Path) -> list[Case]:
    out = []
    for check, rules in POLARIS.items():
        for f in sorted((root / "test/checks" / check).glob("*.y*ml")):
            if f.name.startswith(("failure", "success")):  # not mutated.*: a mutation test's input
                fails = f.name.startswith("failure")
                out.append(Case("polaris", check, f, rules, int(fails), "failure" if fails else "success"))
    return out


_BATS_TEST = re.compile(r'@test "([^"]+)" \{(.*?)\n\}', re.S)


def kube_linter_cases(root: Path) -> list[Case]:
    bats = (root / "e2etests/bats-tests.sh").read_text(encoding="utf-8")
    out = []
    for name, body in _BATS_TEST.findall(bats):
        include = re.search(r"--include (\S+)", body)
        tmp = re.search(r'tmp="([^"]+)"', body)
        count = re.search(r'\[\[ "\$\{count\}" == "(\d+)" \]\]', body)
        if not (include and tmp and count) or include.group(1) not in KUBE_LINTER:
            continue
        check = include.group(1)
        total = int(count.group(1))
        # the expected messages start with the object's kind; scale the count to the kinds we check
        kinds = re.findall(r'\[\[ "\$\{message\d+\}" == "(\w+):', body)
        outside = sum(k in OUT_OF_SCOPE_KINDS for k in kinds)
        skipped = round(total * outside / len(kinds)) if kinds else 0
        out.append(Case("kube-linter", check, root / tmp.group(1), KUBE_LINTER[check], total - skipped,
                        f"{total} report(s)", skipped))
    return out


_KS_CALL = re.compile(r'testExpectedScore\(t, "([^"]+)", "([^"]+)", scorecard\.(Grade\w+)\)')


def kube_score_cases(root: Path) -> list[Case]:
    out = []
    for test in sorted((root / "score").rglob("*_test.go")):
        for file, check, grade in _KS_CALL.findall(test.read_text(encoding="utf-8")):
            if check not in KUBE_SCORE:
                continue
            path = root / "score/testdata" / file
            if path.is_file():
                out.append(Case("kube-score", check, path, KUBE_SCORE[check], int(grade != "GradeAllOK"), grade))
    return out


def validate(file: Path) -> list[dict]:
    """The findings of gitops-validate on one manifest file (this repo's tools and schemas)."""
    cmd = [sys.executable, "-m", "gitops_validate.cli", "--repo", str(ROOT), "--manifests", str(file),
           "--format", "json", "--schema-dir", str(ROOT / ".tools/schemas")]
    env = {"PATH": f"{ROOT / '.tools/bin'}:/usr/bin:/bin"}
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    if p.returncode == 2:
        raise SystemExit(f"gitops-validate could not run on {file}: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)["findings"]


def score(cases: list[Case]) -> None:
    files = sorted({c.file for c in cases})
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(files, pool.map(validate, files)))
    for c in cases:
        c.found = [f for f in results[c.file] if c.shared.counts(f)]


def report(cases: list[Case], root_of: dict[str, Path], markdown: bool) -> str:
    by_check: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for c in cases:
        by_check[(c.corpus, c.check)].append(c)
    lines = []
    total_exp = total_caught = 0
    if markdown:
        lines += ["| corpus | their check | our rules | expected findings | caught | recall | clean cases flagged |",
                  "|---|---|---|---|---|---|---|"]
    for (corpus, check), cs in by_check.items():
        exp = sum(c.expected for c in cs)
        caught = sum(c.caught for c in cs)
        flagged = sum(1 for c in cs if not c.expected and c.found)
        total_exp, total_caught = total_exp + exp, total_caught + caught
        recall = f"{100 * caught / exp:.0f} %" if exp else "n/a"
        rules = ", ".join(cs[0].shared.rules)
        if markdown:
            lines.append(f"| {corpus} | `{check}` | {rules} | {exp} | {caught} | {recall} | {flagged} |")
        else:
            lines.append(f"{corpus:12} {check:40} expected {exp:3} caught {caught:3} recall {recall:>5}  "
                         f"clean cases flagged {flagged}")
    overall = f"{100 * total_caught / total_exp:.1f} %" if total_exp else "n/a"
    lines += ["", f"Overall recall on shared checks: {total_caught}/{total_exp} = {overall}", "",
              "Disagreements (a miss, a finding on a case labelled clean, or more findings than reports), "
              "and reports on kinds we do not check:", ""]
    for c in cases:
        rel = str(c.file.relative_to(root_of[c.corpus]))
        if len(c.found) < c.expected:
            what = f"missed ({len(c.found)} of {c.expected})"
        elif not c.expected and c.found:
            what = "flagged a clean case"
        elif c.corpus == "kube-linter" and len(c.found) > c.expected:
            what = f"{len(c.found)} findings for {c.expected} report(s)"
        elif c.out_of_scope:
            what = f"{c.out_of_scope} report(s) on OpenShift kinds not counted"
        else:
            continue
        said = "; ".join(f"{f['rule']} on {(f.get('object') or {}).get('kind', '?')} "
                         f"{(f.get('object') or {}).get('name', '')}" for f in c.found) or "nothing"
        reason = REASONS.get((c.corpus, c.check, rel)) or REASONS.get((c.corpus, c.check, "*"), "(no reason recorded)")
        lines.append(f"- {c.corpus} `{c.check}` `{rel}` ({c.label}): {what}; we said: {said}. **Why:** {reason}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--polaris", type=Path)
    ap.add_argument("--kube-linter", type=Path)
    ap.add_argument("--kube-score", type=Path)
    ap.add_argument("--markdown", action="store_true", help="a Markdown table (for docs/accuracy.md)")
    args = ap.parse_args(argv)
    readers = {"polaris": (args.polaris, polaris_cases, "test/checks"),
               "kube-linter": (args.kube_linter, kube_linter_cases, "e2etests/bats-tests.sh"),
               "kube-score": (args.kube_score, kube_score_cases, "score/testdata")}
    cases: list[Case] = []
    roots = {}
    for corpus, (root, read, marker) in readers.items():
        if root is None:
            continue
        if not (root / marker).exists():
            print(f"score_peers: {root} is not a {corpus} checkout (no {marker})", file=sys.stderr)
            return 2
        roots[corpus] = root
        cases += read(root)
    if not cases:
        ap.error("give at least one checkout")
    score(cases)
    sys.stdout.write(report(cases, roots, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
