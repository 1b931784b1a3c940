"""gitops-validate outside this repository: what the package carries (Argo CD's CRD schemas, the
pins), the Kubernetes schemas it builds on first use, and `gitops-validate doctor`."""

from __future__ import annotations

import filecmp
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import CLI, ROOT, TOOLS, VERSIONS

from gitops_validate import schemastore, toolchain

DATA = ROOT / "validator" / "data"
ARGO_CRDS = ROOT / ".tools" / "argocd" / VERSIONS["ARGOCD_VERSION"] / "crds"


def _same_tree(a: Path, b: Path) -> list[str]:
    """Relative paths that differ between two trees (missing on one side or different bytes)."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    return sorted(str(p) for p in files_a ^ files_b) + sorted(
        str(p) for p in files_a & files_b if not filecmp.cmp(a / p, b / p, shallow=False))


def test_packaged_crd_schemas_are_built_from_the_pinned_argocd(tmp_path):
    assert ARGO_CRDS.is_dir(), f"{ARGO_CRDS} is missing: run make setup"
    out = tmp_path / "crds"
    subprocess.run([sys.executable, "-m", "gitops_validate.schemastore", "crds", "--out", str(out),
                    *map(str, sorted(ARGO_CRDS.glob("*.yaml")))], check=True, capture_output=True)
    assert sorted(p.name for p in (out / "argoproj.io").iterdir()) == [
        "application_v1alpha1.json", "applicationset_v1alpha1.json", "appproject_v1alpha1.json"]
    assert _same_tree(out, DATA / "crds") == [], (
        "validator/data/crds is stale: python -m gitops_validate.schemastore crds --out validator/data/crds "
        f"{ARGO_CRDS.relative_to(ROOT)}/*.yaml")
    assert VERSIONS["ARGOCD_VERSION"] in (DATA / "NOTICE").read_text()


def test_pins_come_from_the_versions_file():
    assert (DATA / "versions").read_text() == (ROOT / "versions").read_text()
    assert {t.name: toolchain.pin(t) for t in toolchain.TOOLS} == {
        "helm": VERSIONS["HELM_VERSION"], "kubeconform": VERSIONS["KUBECONFORM_VERSION"],
        "kustomize": VERSIONS["KUSTOMIZE_VERSION"]}
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"kubernetes-validate=={VERSIONS['KUBERNETES_VALIDATE_VERSION']}" in deps


def test_user_schemas_equal_the_setup_build(tmp_path):
    """The tree an installed gitops-validate builds on first use (from the installed kubernetes-validate
    and the package data) is the tree `make setup` builds from the pinned wheel and Argo CD's CRDs."""
    root = schemastore.user_schemas(tmp_path / "schemas", VERSIONS["KUBERNETES_VERSION"])
    assert _same_tree(root / "kubernetes", ROOT / ".tools" / "schemas" / "kubernetes") == []
    assert _same_tree(root / "crds", ROOT / ".tools" / "schemas" / "crds") == []
    # Any minor the package ships, each built once, next to the others.
    assert {"v1.33", "v1.35", "v1.37"} <= set(schemastore.shipped_minors())
    schemastore.user_schemas(root, "1.33")
    assert sorted(p.name for p in (root / "kubernetes").iterdir()) == ["v1.33", "v1.35"]
    assert (root / "kubernetes" / "v1.33" / "deployment-apps-v1.json").is_file()


def _doctor(path: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PATH": path, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run([str(CLI), "doctor"], env=env, capture_output=True, text=True, timeout=60)


def test_doctor_with_no_tool_names_every_one_and_exits_2(tmp_path):
    p = _doctor("/usr/bin:/bin", tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    for tool in toolchain.TOOLS:
        pin = VERSIONS[tool.pin]
        assert any(l.startswith(f"✗ {tool.name} ") and pin in l for l in lines), p.stdout
    install = lines[lines.index(next(l for l in lines if l.startswith("Install the missing tools"))) + 1:]
    assert len(install) == 3 and all(re.search(r"curl -fsSL https://\S+ \| tar -xz", l) for l in install), install
    assert str(tmp_path / "cache" / "gitops-validate" / "bin") in install[0]


def test_doctor_with_go_prints_go_install_with_the_version_ldflags(tmp_path):
    go = Path(subprocess.run(["bash", "-c", "command -v go"], capture_output=True, text=True,
                             env={"PATH": os.environ["PATH"] + ":/usr/local/go/bin"}).stdout.strip())
    assert go.name == "go", "Go is needed (make setup builds the tools with it)"
    p = _doctor(f"{go.parent}:/usr/bin:/bin", tmp_path)
    assert p.returncode == 2
    assert (f'go install -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version={VERSIONS["HELM_VERSION"]}" '
            f"helm.sh/helm/v4/cmd/helm@{VERSIONS['HELM_VERSION']}") in p.stdout
    assert "gitops-validate tools install" in p.stdout


def test_doctor_finds_the_pinned_tools(tmp_path):
    p = _doctor(f"{TOOLS}:/usr/bin:/bin", tmp_path)
    assert p.returncode == 0, p.stdout
    # every tool `make setup` built reports its pinned version (a build without it says "unknown")
    for tool in toolchain.TOOLS:
        assert f"✓ {tool.name:<12} {VERSIONS[tool.pin]}" in p.stdout and str(TOOLS / tool.name) in p.stdout, p.stdout
    assert "missing" not in p.stdout and "unknown" not in p.stdout


def test_tools_install_builds_the_pinned_kubeconform_into_the_cache(tmp_path):
    """`gitops-validate tools install` with Go: the pinned version, reporting its version, where the
    validator looks. Go's own caches stay the warm ones of `make setup`."""
    go_env = subprocess.run(["bash", "-c", "PATH=$PATH:/usr/local/go/bin; command -v go; go env GOCACHE GOMODCACHE"],
                            capture_output=True, text=True, check=True).stdout.split()
    go, gocache, gomodcache = go_env
    env = {"PATH": f"{Path(go).parent}:/usr/bin:/bin", "HOME": os.environ["HOME"], "GOCACHE": gocache,
           "GOMODCACHE": gomodcache, "GOFLAGS": "-mod=mod", "GOPROXY": os.environ.get("GOPROXY", "https://proxy.golang.org"),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    p = subprocess.run([str(CLI), "tools", "install", "kubeconform"], env=env, capture_output=True, text=True, timeout=900)
    built = tmp_path / "cache" / "gitops-validate" / "bin" / "kubeconform"
    assert built.is_file(), p.stdout + p.stderr
    assert subprocess.run([built, "-v"], capture_output=True, text=True).stdout.strip() == VERSIONS["KUBECONFORM_VERSION"]
    # helm and kustomize are still missing: doctor (run at the end) says so and exits 2.
    assert p.returncode == 2 and re.search(rf"✓ kubeconform +{VERSIONS['KUBECONFORM_VERSION']} +{built}\n", p.stdout), p.stdout
    assert re.search(r"✗ helm +missing", p.stdout) and re.search(r"✗ kustomize +missing", p.stdout)
    p = subprocess.run([str(CLI), "tools", "install", "kubeconform", "nosuchtool"], env=env, capture_output=True, text=True)
    assert p.returncode == 2 and "nosuchtool" in p.stderr


def test_any_minor_the_package_ships_and_a_clear_exit_2_for_others(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    env = {"PATH": f"{TOOLS}:/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def run(version: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(CLI), "--manifests", "--kubernetes-version", version, str(f)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
    p = run("1.36")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (tmp_path / "cache" / "gitops-validate" / "schemas" / "kubernetes" / "v1.36" / "configmap-v1.json").is_file()
    p = run("1.20")
    assert p.returncode == 2 and "no strict schemas for Kubernetes v1.20" in p.stderr and "v1.37" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
