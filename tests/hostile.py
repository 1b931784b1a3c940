"""Building blocks for hostile repositories: a tiny chart, Applications, symlinks out of the repo,
a canary file outside it whose content must never be printed, and a network guard."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CLI, Run, tool_env

REPO_URL = "https://git.example/hostile.git"


def canary(tmp_path: Path) -> tuple[Path, str]:
    """A file outside the repo; its token must never appear in any output. It is YAML naming an
    Application, so a validator that read it would say its name."""
    token = "CANARY" + secrets.token_hex(8)
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    f = outside / "id_ed25519"
    f.write_text(f"apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {{name: {token.lower()}, namespace: argocd}}\n"
                 f"spec: {{source: {{repoURL: {REPO_URL}, path: {token}}}, destination: {{namespace: {token}}}}}\n"
                 f"x-{token}: printed if read\n# {token}\n")
    return f, token


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def link(root: Path, rel: str, target: Path | str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(target)


def chart(root: Path, rel: str, templates: dict[str, str] | None = None, schema: dict | None = None,
          values: str = "replicas: 1\n") -> None:
    """A chart rendering one ConfigMap (plus ``templates``)."""
    write(root, f"{rel}/Chart.yaml", f"apiVersion: v2\nname: {Path(rel).name}\nversion: 0.1.0\n")
    write(root, f"{rel}/values.yaml", values)
    write(root, f"{rel}/templates/cm.yaml",
          "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\ndata: {replicas: \"{{ .Values.replicas }}\"}\n")
    for name, text in (templates or {}).items():
        write(root, f"{rel}/templates/{name}", text)
    if schema is not None:
        write(root, f"{rel}/values.schema.json", json.dumps(schema, indent=2) + "\n")


def application(name: str, path: str, value_files: list[str] | None = None, extra: str = "") -> str:
    helm = f"\n    helm: {{valueFiles: {json.dumps(value_files)}}}" if value_files else ""
    return f"""apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}, namespace: argocd}}
spec:
  project: default
  source:
    repoURL: {REPO_URL}
    targetRevision: main
    path: {path}{helm}
  destination: {{server: https://kubernetes.default.svc, namespace: {name}}}
{extra}"""


def git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "-A"], check=True)


def net_guard(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose Python refuses every socket connection and logs the attempt."""
    guard = tmp_path / "netguard"
    guard.mkdir(exist_ok=True)
    log = tmp_path / "net-attempts.log"
    (guard / "sitecustomize.py").write_text(f"""\
import socket

def _refuse(self, address, *a, **k):
    with open({str(log)!r}, "a") as fh:
        fh.write(repr(address) + "\\n")
    raise OSError("network access refused by the test's guard")

socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.create_connection = lambda address, *a, **k: _refuse(None, address)
""")
    env = tool_env()
    env["PYTHONPATH"] = str(guard) + os.pathsep + env.get("PYTHONPATH", "")
    return env, log


def run_offline(*args: str, env: dict[str, str], stdin: str | None = None, timeout: int = 180) -> Run:
    """The real CLI in a network namespace of its own (no interface but loopback, which is down)."""
    unshare = shutil.which("unshare")
    if not unshare or subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode != 0:
        pytest.fail("`unshare -rn` is needed to prove the validator runs without a network (util-linux)")
    p = subprocess.run([unshare, "-rn", str(CLI), *args], env=env, input=stdin, capture_output=True, text=True,
                       timeout=timeout)
    return Run(p.returncode, p.stdout, p.stderr)
