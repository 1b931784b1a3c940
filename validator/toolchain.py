"""The external tools gitops-validate runs (helm, kubeconform, kustomize): where they are, whether
they are the pinned versions, and the one command that installs each.

``gitops-validate doctor`` reports all of them at once (exit 2 when one is missing);
``gitops-validate tools install`` builds the missing ones with ``go install`` into the user's cache
(``$XDG_CACHE_HOME/gitops-validate/bin``), where the validator looks after PATH. The pins are the
repository's ``versions`` file, shipped in the package as ``data/versions``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import userdirs
from .record import Frozen

VERSIONS_FILE = Path(__file__).resolve().parent / "data" / "versions"
VERSION_TIMEOUT = 10
INSTALL_TIMEOUT = 900


class Tool(Frozen):
    name: str
    pin: str                   # key in the versions file
    module: str                # Go package to `go install`
    ldflags: str               # {v}: the version; makes `<tool> version` report it like a release build
    version_args: tuple[str, ...]
    release: str               # {v} {os} {arch}: the official release archive
    member: str                # the binary's path inside that archive
    needed_for: str

    def __init__(self, name: str, pin: str, module: str, ldflags: str, version_args: tuple[str, ...], release: str,
                 member: str, needed_for: str) -> None:
        self._assign(name, pin, module, ldflags, version_args, release, member, needed_for)


TOOLS = (
    Tool("helm", "HELM_VERSION", "helm.sh/helm/v4/cmd/helm", "-s -w -X helm.sh/helm/v4/internal/version.version={v}",
         ("version", "--template", "{{.Version}}"), "https://get.helm.sh/helm-{v}-{os}-{arch}.tar.gz",
         "{os}-{arch}/helm", "rendering Helm charts"),
    Tool("kubeconform", "KUBECONFORM_VERSION", "github.com/yannh/kubeconform/cmd/kubeconform",
         "-s -w -X main.version={v}", ("-v",),
         "https://github.com/yannh/kubeconform/releases/download/{v}/kubeconform-{os}-{arch}.tar.gz",
         "kubeconform", "the schema check"),
    Tool("kustomize", "KUSTOMIZE_VERSION", "sigs.k8s.io/kustomize/kustomize/v5", "-s -w", ("version",),
         "https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2F{v}/kustomize_{v}_{os}_{arch}.tar.gz",
         "kustomize", "rendering Kustomize sources"),
)
BY_NAME = {t.name: t for t in TOOLS}


def pins() -> dict[str, str]:
    out = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def pin(tool: Tool) -> str:
    return pins()[tool.pin]


def locate(name: str) -> str | None:
    """PATH first (the user's choice), then the cache's bin/ (`gitops-validate tools install`)."""
    found = shutil.which(name)
    if found:
        return found
    cached = userdirs.bin_dir() / name
    return str(cached) if cached.is_file() and os.access(cached, os.X_OK) else None


def version_of(path: str, tool: Tool) -> str | None:
    try:
        out = subprocess.run([path, *tool.version_args], capture_output=True, text=True, timeout=VERSION_TIMEOUT)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"v?\d+\.\d+\.\d+", out.stdout + out.stderr)
    return None if m is None else "v" + m.group(0).lstrip("v")


def _os_arch() -> tuple[str, str]:
    import platform  # only for an install hint: its import (regexes) is not paid by every run
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower())
    return sys.platform.replace("win32", "windows").replace("linux2", "linux"), arch


def install_command(tool: Tool, go: bool | None = None) -> str:
    """The one command that puts the pinned tool into the cache's bin/: `go install` when Go is on
    PATH, else the official release archive."""
    v, bin_dir = pin(tool), userdirs.bin_dir()
    if go if go is not None else shutil.which("go"):
        return (f'GOBIN={bin_dir} CGO_ENABLED=0 go install -ldflags "{tool.ldflags.format(v=v)}" '
                f"{tool.module}@{v}")
    osname, arch = _os_arch()
    url = tool.release.format(v=v, os=osname, arch=arch)
    if osname == "windows":
        return f"download {url.replace('.tar.gz', '.zip')} and put {tool.name}.exe on PATH"
    member = tool.member.format(os=osname, arch=arch)
    strip = member.count("/")
    return (f"mkdir -p {bin_dir} && curl -fsSL {url} | tar -xz -C {bin_dir}"
            + (f" --strip-components={strip}" if strip else "") + f" {member}")


def missing_hint(name: str) -> str:
    """What the pipeline says when a tool it needs is not there."""
    tool = BY_NAME[name]
    return (f"{name} not found on PATH or in {userdirs.bin_dir()}. Install {name} {pin(tool)} with:\n"
            f"  {install_command(tool)}\n"
            f"(`gitops-validate doctor` checks every tool; `gitops-validate tools install` builds them with Go.)")


def doctor(out=sys.stdout) -> int:
    missing = []
    for tool in TOOLS:
        want = pin(tool)
        path = locate(tool.name)
        if path is None:
            missing.append(tool)
            print(f"✗ {tool.name:<12} missing (pinned {want}; needed for {tool.needed_for})", file=out)
            continue
        have = version_of(path, tool)
        note = ("" if have == want else
                f"  (pinned {want}; the version is unknown)" if have is None else f"  (pinned {want}: {install_command(tool)})")
        print(f"{'✓' if have == want else '!'} {tool.name:<12} {have or 'unknown':<9} {path}{note}", file=out)
    _doctor_renderer(out)
    if missing:
        print(f"\nInstall the missing tool{'s' if len(missing) > 1 else ''}"
              f"{' (or all at once: gitops-validate tools install)' if shutil.which('go') else ''}:", file=out)
        for tool in missing:
            print(f"  {install_command(tool)}", file=out)
        return 2
    return 0


def _doctor_renderer(out) -> None:
    """helm-renderer is optional (without it the helm CLI renders, slower): reported, never missing."""
    from .helmrenderer import NAME, locate as beside
    helm = locate("helm")
    renderer = beside(helm) if helm else None
    if renderer is None:
        print(f"- {NAME:<12} {'none':<9} the helm CLI renders (helm-renderer beside helm is faster; "
              "`make setup` in the repository builds it)", file=out)
        return
    have, want = version_of(renderer, BY_NAME["helm"]), pin(BY_NAME["helm"])
    note = "  (renders in helm's place)" if have == want else f"  (embeds helm {have or 'unknown'}, pinned {want}: not used)"
    print(f"{'✓' if have == want else '!'} {NAME:<12} {have or 'unknown':<9} {renderer}{note}", file=out)


def install(names: list[str], out=sys.stdout) -> int:
    go = shutil.which("go")
    if not go:
        print("gitops-validate tools install needs Go on PATH (https://go.dev/doc/install); "
              "`gitops-validate doctor` prints download commands instead.", file=sys.stderr)
        return 2
    bin_dir = userdirs.bin_dir()
    bin_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(bin_dir), CGO_ENABLED="0")
    for tool in [BY_NAME[n] for n in names] if names else TOOLS:
        target = bin_dir / tool.name
        if target.is_file() and version_of(str(target), tool) == pin(tool):
            print(f"{tool.name} {pin(tool)} already in {bin_dir}", file=out)
            continue
        print(f"building {tool.name} {pin(tool)} into {bin_dir} (go install)", file=out, flush=True)
        try:
            proc = subprocess.run([go, "install", "-ldflags", tool.ldflags.format(v=pin(tool)),
                                   f"{tool.module}@{pin(tool)}"], env=env, timeout=INSTALL_TIMEOUT,
                                  capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            print(f"go install {tool.name} did not finish within {INSTALL_TIMEOUT}s", file=sys.stderr)
            return 2
        if proc.returncode != 0:
            print(f"go install {tool.name} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            return 2
    return doctor(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="gitops-validate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("doctor", help="report helm, kubeconform and kustomize: found, version, how to install")
    t = sub.add_parser("tools", help="manage the pinned tools in the user's cache").add_subparsers(dest="action", required=True)
    i = t.add_parser("install", help=f"go install the pinned tools into {userdirs.bin_dir()}")
    i.add_argument("names", nargs="*", metavar="TOOL", help=f"{', '.join(BY_NAME)} (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in getattr(args, "names", []) if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown tool {', '.join(unknown)} (known: {', '.join(BY_NAME)})")
    if args.cmd == "doctor":
        return doctor()
    return install(args.names)
