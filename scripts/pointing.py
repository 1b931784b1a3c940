#!/usr/bin/env python3
"""Where findings point: realistic one-line edits to this repository, and the share of the findings
they cause that point at the edited file and line (issue 12's pointing measurement).

    .venv/bin/python scripts/pointing.py [--json | --markdown]

Each edit is applied to a fresh copy of the repository (tests/e2e/harness.copy_repo), the copy is
validated with the real helm and kubeconform, and every finding is classified: at the edited file
and line, at the edited file only, or elsewhere. The figure is findings at the edited line / all
findings of the edits; an edit that causes no finding at all is a miss and is listed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from e2e.harness import copy_repo  # noqa: E402  (one way to copy the repo, shared with the tests)

BACKEND = "clusters/minikube/values/todo-backend.yaml"
FRONTEND = "clusters/minikube/values/todo-frontend.yaml"


@dataclass(frozen=True)
class Edit:
    name: str
    file: str
    old: str
    new: str


#: One-line edits a reviewer could plausibly miss, to the cluster values, the cluster facts and the
#: charts (values.yaml defaults the cluster does not override, and templates); each must cause at
#: least one finding. Not chosen to pass: an edit whose findings point elsewhere stays in the list.
EDITS = (
    # the cluster's values (clusters/minikube/values/)
    Edit("memory limit below request", BACKEND, "    memory: 1Gi\n", "    memory: 128Mi\n"),
    Edit("cpu request above limit", FRONTEND, "    cpu: 100m\n", "    cpu: 800m\n"),
    Edit("readiness probe removed", BACKEND, "replicaCount: 2\n", "replicaCount: 2\nreadinessProbe: null\n"),
    Edit("backend port changed", BACKEND, "  port: 8001\n", "  port: 8002\n"),
    Edit("backend URL port wrong", FRONTEND, "  BACKEND_URL: http://todo-backend:8001\n",
         "  BACKEND_URL: http://todo-backend:8002\n"),
    Edit("backend URL host wrong", FRONTEND, "  BACKEND_URL: http://todo-backend:8001\n",
         "  BACKEND_URL: http://todo-backnd:8001\n"),
    Edit("image tag set to latest", FRONTEND, '  tag: "1.0.0"\n', "  tag: latest\n"),
    Edit("image pull policy Always", BACKEND, "  pullPolicy: IfNotPresent\n", "  pullPolicy: Always\n"),
    Edit("nodePort out of range", FRONTEND, "  nodePort: 30000\n", "  nodePort: 3000\n"),
    Edit("values key misspelt", BACKEND, "replicaCount: 2\n", "replicaCont: 2\n"),
    Edit("replica count not a number", FRONTEND, "replicaCount: 2\n", "replicaCount: two\n"),
    Edit("Secret name misspelt", BACKEND, "  existingSecret: todo-backend-secrets", "  existingSecret: todo-backend-secret"),
    # the cluster's facts
    Edit("Secret key renamed", "clusters/minikube/cluster.yaml", "      - JWT_SECRET\n", "      - JWT_SECRETS\n"),
    # the charts' defaults
    Edit("Secret key renamed in the chart", "apps/todo-backend/values.yaml", "    - JWT_SECRET\n", "    - JWT_SECRETS\n"),
    Edit("liveness probe port typo", "apps/todo-backend/values.yaml", "    port: http\n", "    port: htpp\n"),
    Edit("runAsNonRoot false", "apps/todo-backend/values.yaml", "  runAsNonRoot: true\n", "  runAsNonRoot: false\n"),
    Edit("read-only root filesystem off", "apps/todo-frontend/values.yaml", "  readOnlyRootFilesystem: true\n",
         "  readOnlyRootFilesystem: false\n"),
    Edit("NetworkPolicy port to the backend wrong", "apps/todo-frontend/values.yaml", "    port: 8001\n", "    port: 8002\n"),
    Edit("NetworkPolicy backend label wrong", "apps/todo-frontend/values.yaml",
         "      app.kubernetes.io/name: todo-backend\n", "      app.kubernetes.io/name: todo-api\n"),
    # the charts' templates
    Edit("Service targetPort typo", "apps/todo-backend/templates/service.yaml", "      targetPort: http\n",
         "      targetPort: htpp\n"),
    Edit("Service selector label changed", "apps/todo-backend/templates/service.yaml",
         '    {{- include "todo-backend.selectorLabels" . | nindent 4 }}\n', "    app.kubernetes.io/name: todo-api\n"),
    Edit("resources block dropped (values key typo)", "apps/todo-frontend/templates/deployment.yaml",
         "          {{- with .Values.resources }}\n", "          {{- with .Values.resource }}\n"),
)


def edited_line(before: str, after: str) -> int:
    """The first line that differs (1-based)."""
    for i, (a, b) in enumerate(zip(before.splitlines(), after.splitlines()), 1):
        if a != b:
            return i
    return min(len(before.splitlines()), len(after.splitlines())) + 1


def run_edit(edit: Edit) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        copy_repo(repo)
        path = repo / edit.file
        before = path.read_text(encoding="utf-8")
        if edit.old not in before:
            raise SystemExit(f"pointing: {edit.name}: {edit.old!r} is not in {edit.file}")
        after = before.replace(edit.old, edit.new, 1)
        path.write_text(after, encoding="utf-8")
        line = edited_line(before, after)
        env = dict(os.environ, PATH=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ.get('PATH', '')}")
        p = subprocess.run([sys.executable, "-m", "gitops_validate.cli", "--repo", str(repo), "--no-cache",
                            "--format", "json", "--schema-dir", str(ROOT / ".tools/schemas")],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        if p.returncode == 2:
            raise SystemExit(f"pointing: {edit.name}: gitops-validate could not run: {p.stderr[-500:]}")
        findings = json.loads(p.stdout)["findings"]
    return {"edit": edit.name, "file": edit.file, "line": line,
            "findings": [{"rule": f["rule"], "file": f["file"], "line": f["line"],
                          "at": "line" if (f["file"], f["line"]) == (edit.file, line)
                          else "file" if f["file"] == edit.file else "elsewhere"} for f in findings]}


def markdown(data: dict) -> str:
    """The table for docs/accuracy.md: each edit, where its findings point, and the figure."""
    rows = ["| edit | edited line | findings: rule, where it points |", "|---|---|---|"]
    for r in data["edits"]:
        found = "<br>".join(f"`{f['rule']}` " + ("**at the edited line**" if f["at"] == "line"
                                                  else f"{f['file']}:{f['line'] or '-'} ({f['at']})")
                            for f in r["findings"]) or "NO FINDING"
        rows.append(f"| {r['edit']} | `{r['file']}:{r['line']}` | {found} |")
    share = 100 * data["at_edited_line"] / data["findings"] if data["findings"] else 0
    rows += ["", f"**{data['at_edited_line']} of {data['findings']} findings ({share:.0f} %) point at the edited "
             f"file and line**, over {len(data['edits'])} edits."]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="the table for docs/accuracy.md")
    args = ap.parse_args(argv)
    results = [run_edit(e) for e in EDITS]
    total = sum(len(r["findings"]) for r in results)
    at_line = sum(1 for r in results for f in r["findings"] if f["at"] == "line")
    data = {"edits": results, "findings": total, "at_edited_line": at_line}
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    if args.markdown:
        print(markdown(data))
        return 0
    for r in results:
        where = ", ".join(f"{f['rule']} at {f['file']}:{f['line']} ({f['at']})" for f in r["findings"]) or "NO FINDING"
        print(f"- {r['edit']} ({r['file']}:{r['line']}): {where}")
    share = f"{100 * at_line / total:.0f} %" if total else "n/a"
    print(f"\n{at_line} of {total} findings point at the edited file and line ({share}); "
          f"{sum(1 for r in results if not r['findings'])} edit(s) caused no finding")
    return 0


if __name__ == "__main__":
    sys.exit(main())
