"""The end-to-end harness: a Kubernetes control plane and Argo CD as plain local processes.

Control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (a fake
kubelet: one Node, Pods go Running and Ready without containers). Argo CD: redis, the repo
server, the application controller and the API server, each with the environment its
Deployment in install.yaml would give it. Everything listens on loopback ports chosen at start
(but the controller's metrics, which Argo CD binds to 0.0.0.0).

Every process runs in its own process group, which `Processes.stop` ends (TERM, then KILL), and
dies with the harness itself (PR_SET_PDEATHSIG), so even a killed test run leaves nothing.
`E2E_KUBECONFIG` skips the control plane and runs Argo CD against that cluster instead.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
E2E_HOME = Path(os.environ.get("E2E_HOME", ROOT / ".tools" / "e2e"))
BIN = E2E_HOME / "bin"
HELM_BIN = ROOT / ".tools" / "bin"


def read_versions() -> dict[str, str]:
    """The pins of the `versions` file (KEY=value lines; # comments)."""
    out = {}
    for line in (ROOT / "versions").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


VERSIONS = read_versions()
ARGOCD = "argocd"  # Argo CD's namespace, as in argocd/kustomization.yaml
NODE = "kwok-node-0"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        os.setsid()
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the harness died before prctl took effect
            os._exit(1)
    return preexec


class HarnessError(RuntimeError):
    pass


class CommandError(subprocess.CalledProcessError):
    """A failed command whose message carries what it printed."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {(self.stderr or self.stdout or '').strip()}"


def run(argv: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if check and p.returncode:
        raise CommandError(p.returncode, p.args, p.stdout, p.stderr)
    return p


class Processes:
    """Started processes, their logs, and a stop that always ends all of them."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("ab")
        # The run's directory as working directory: a process of this run is one whose cwd is in it.
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd or self.logs.parent,
                                preexec_fn=_die_with_parent(os.getpid()))
        log.close()
        self.running.append((name, proc))
        return proc

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
        return f"--- last lines of {path}\n" + "\n".join(text)

    def check(self) -> None:
        for name, proc in self.running:
            if proc.poll() is not None:
                raise HarnessError(f"{name} exited with code {proc.returncode}\n{self.tail(name)}")

    def stop(self) -> None:
        for _, proc in reversed(self.running):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, proc in reversed(self.running):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the group too: whatever a process started (git, helm) goes with it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.running.clear()

    def wait_until(self, what: str, probe: Callable[[], Any], timeout: float, logs: tuple[str, ...] = ()) -> Any:
        """Poll `probe` until it returns something true; fail naming `what` with the logs' tails."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            self.check()
            try:
                last = probe()
            except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
                last = e
            else:
                if last:
                    return last
            time.sleep(1)
        tails = "\n".join(self.tail(n) for n in logs)
        raise HarnessError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}\n{tails}")


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return run([str(BIN / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args], check, input=stdin, timeout=120)

    def get(self, kind: str, name: str = "", namespace: str | None = None) -> dict:
        ns = ["-n", namespace] if namespace else []
        return json.loads(self("get", kind, *([name] if name else []), *ns, "-o", "json").stdout)

    def ensure_namespace(self, name: str) -> None:
        """As scripts/bootstrap.sh does it: create it, or leave it as it is."""
        self("apply", "-f", "-", stdin=self("create", "namespace", name, "--dry-run=client", "-o", "yaml").stdout)

    def apply(self, docs: list[dict] | str) -> None:
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs)
        self("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text)


def _openssl(*args: str, cwd: Path) -> None:
    run(["openssl", *args], cwd=cwd)


def make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, an admin client (system:masters), SA keys."""
    pki.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=todo-e2e-ca", cwd=pki)
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver",
         "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes.default.svc\n"
         "extendedKeyUsage=serverAuth"),
        ("admin", "/O=system:masters/CN=todo-e2e-admin", "extendedKeyUsage=clientAuth"),
    ):
        (pki / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subject, cwd=pki)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=pki)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "todo-e2e",
        "clusters": [{"name": "todo-e2e", "cluster": {"server": server,
                                                      "certificate-authority": str(pki / "ca.crt")}}],
        "users": [{"name": "admin", "user": {"client-certificate": str(pki / "admin.crt"),
                                             "client-key": str(pki / "admin.key")}}],
        "contexts": [{"name": "todo-e2e", "context": {"cluster": "todo-e2e", "user": "admin",
                                                      "namespace": ARGOCD}}],
    }))


def start_control_plane(procs: Processes, work: Path) -> Path:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok and its Node; returns the kubeconfig."""
    pki = work / "pki"
    make_pki(pki)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    procs.start("etcd", [
        str(BIN / "etcd"), "--name=e2e", f"--data-dir={work / 'etcd'}", "--unsafe-no-fsync",
        f"--listen-client-urls=http://127.0.0.1:{etcd_port}", f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
        f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
        f"--initial-cluster=e2e=http://127.0.0.1:{peer_port}", f"--listen-metrics-urls=http://127.0.0.1:{free_port()}",
    ])
    procs.start("kube-apiserver", [
        str(BIN / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}", "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-cluster-ip-range=10.96.0.0/16",
        # The `kubernetes` Service's endpoints cannot be a loopback address; nothing here needs them.
        "--endpoint-reconciler-type=none",
    ])
    kubeconfig = work / "kubeconfig"
    write_kubeconfig(kubeconfig, f"https://127.0.0.1:{api_port}", pki)
    kubectl = Kubectl(kubeconfig)
    procs.wait_until("kube-apiserver /readyz", lambda: kubectl("get", "--raw=/readyz").stdout.strip() == "ok",
                     120, logs=("etcd", "kube-apiserver"))
    common = [f"--kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", "--leader-elect=false"]
    procs.start("kube-controller-manager", [
        str(BIN / "kube-controller-manager"), *common, f"--secure-port={free_port()}",
        f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials=true", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
    ])
    procs.start("kube-scheduler", [str(BIN / "kube-scheduler"), *common, f"--secure-port={free_port()}",
                                   f"--authentication-kubeconfig={kubeconfig}",
                                   f"--authorization-kubeconfig={kubeconfig}"])
    procs.start("kwok", [
        str(BIN / "kwok"), f"--kubeconfig={kubeconfig}", f"--config={E2E_HOME / 'kwok' / 'stages.yaml'}",
        "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/24", "--node-ip=10.0.0.10",
    ])
    capacity = yaml.safe_load((ROOT / "clusters" / "minikube" / "cluster.yaml").read_text())["capacity"]
    resources = {"cpu": capacity["cpu"], "memory": capacity["memory"], "pods": "110"}
    kubectl.apply([{
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux",
                                "kubernetes.io/arch": "amd64", "type": "kwok"}},
        "status": {"capacity": resources, "allocatable": resources},
    }])

    def node_ready() -> bool:
        node = kubectl.get("node", NODE)
        ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
        return bool(ready) and ready[0]["status"] == "True" and not node["spec"].get("taints")
    procs.wait_until(f"node {NODE} Ready and untainted", node_ready, 120,
                     logs=("kwok", "kube-controller-manager"))
    procs.wait_until("the default ServiceAccount", lambda: kubectl("get", "sa", "default", "-n", "default"), 60,
                     logs=("kube-controller-manager",))
    return kubeconfig


def _container_env(workload: dict, objects: dict[tuple[str, str], dict], overrides: dict[str, str]) -> dict[str, str]:
    """The environment a workload's first container gets in the cluster: values and ConfigMap/Secret keys."""
    env: dict[str, str] = {}
    for item in workload["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        source = item.get("valueFrom", {})
        for kind, ref_key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            ref = source.get(ref_key)
            if ref:
                data = objects.get((kind, ref["name"]), {})
                value = data.get("data", {}).get(ref["key"])
                if value is not None:
                    env[item["name"]] = base64.b64decode(value).decode() if kind == "Secret" else value
                elif not ref.get("optional"):
                    raise HarnessError(f"{workload['metadata']['name']}: {kind} {ref['name']} lacks {ref['key']}")
    env.update(overrides)
    return env


class ArgoCD:
    """Argo CD's server components as local processes, configured by the applied install."""

    def __init__(self, procs: Processes, work: Path, kubeconfig: Path) -> None:
        self.procs, self.work, self.kubeconfig = procs, work, kubeconfig
        self.kubectl = Kubectl(kubeconfig)
        self.server = ""

    def install(self, repo_url: str, settings: dict[str, dict[str, str]]) -> list[dict]:
        """Apply argocd/ as `make bootstrap` does (kustomize, server-side), without the workloads.

        The release manifest comes from .tools (no network); the AppProjects get `repo_url`;
        `settings` ({ConfigMap: {key: value}}) are set on top of the repo's own patches.
        """
        src = self.work / "argocd-install"
        shutil.copytree(ROOT / "argocd", src, ignore=shutil.ignore_patterns("apps", "root-app.yaml"))
        shutil.copy(ROOT / ".tools" / "argocd" / VERSIONS["ARGOCD_VERSION"] / "install.yaml", src / "install.yaml")
        kustomization = yaml.safe_load((src / "kustomization.yaml").read_text())
        kustomization["resources"] = ["install.yaml" if r.startswith("https://") else r
                                      for r in kustomization["resources"]]
        (src / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        projects = src / "projects.yaml"
        projects.write_text(projects.read_text().replace(default_repo_url(), repo_url))
        rendered = [d for d in yaml.safe_load_all(self.kubectl("kustomize", str(src)).stdout) if d]
        for doc in rendered:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] in settings:
                doc["data"] = {**(doc.get("data") or {}), **settings[doc["metadata"]["name"]]}
        self.kubectl.ensure_namespace(ARGOCD)
        crds = [d for d in rendered if d["kind"] == "CustomResourceDefinition"]
        self.kubectl.apply(crds)

        def established() -> bool:
            return all(any(c["type"] == "Established" and c["status"] == "True"
                           for c in self.kubectl.get("crd", d["metadata"]["name"]).get("status", {}).get("conditions") or [])
                       for d in crds)
        self.procs.wait_until("Argo CD's CRDs to be established", established, 60, logs=("kube-apiserver",))
        self.kubectl.apply([d for d in rendered if d["kind"] not in ("CustomResourceDefinition", "Deployment",
                                                                    "StatefulSet")])
        return rendered

    def start(self, rendered: list[dict]) -> None:
        argocd = str(BIN / "argocd")
        # What the redis Deployment's init container does: a random password in Secret argocd-redis.
        run([argocd, "admin", "redis-initial-password", "-n", ARGOCD],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        objects = {(d["kind"], d["metadata"]["name"]): d for d in rendered if d["kind"] in ("ConfigMap", "Secret")}
        objects[("Secret", "argocd-redis")] = self.kubectl.get("secret", "argocd-redis", ARGOCD)
        workloads = {d["metadata"]["name"]: d for d in rendered if d["kind"] in ("Deployment", "StatefulSet")}
        redis_password = _container_env(workloads["argocd-redis"], objects, {})["REDIS_PASSWORD"]

        redis, repo, server = free_port(), free_port(), free_port()
        self.procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis), "--save", "",
                                   "--appendonly", "no", "--requirepass", redis_password])
        data = self.work / "argocd-data"
        base = {
            "KUBECONFIG": str(self.kubeconfig), "ARGOCD_FAKE_IN_CLUSTER": "true", "HOME": str(data / "home"),
            "PATH": f"{BIN}{os.pathsep}{HELM_BIN}{os.pathsep}{os.environ['PATH']}",
            "ARGOCD_TLS_DATA_PATH": str(data / "tls"), "ARGOCD_SSH_DATA_PATH": str(data / "ssh"),
            "ARGOCD_GNUPGHOME": str(data / "gpg" / "keys"), "ARGOCD_GPG_DATA_PATH": str(data / "gpg" / "source"),
            "ARGOCD_PLUGINSOCKFILEPATH": str(data / "plugins"), "TMPDIR": str(data / "tmp"),
            "HELM_CACHE_HOME": str(data / "helm"), "HELM_CONFIG_HOME": str(data / "helm"),
            "HELM_DATA_HOME": str(data / "helm"), "KUBECACHEDIR": str(data / "kubecache"),
        }
        for key in ("home", "tls", "ssh", "gpg/keys", "gpg/source", "plugins", "tmp", "helm", "kubecache"):
            (data / key).mkdir(parents=True, exist_ok=True, mode=0o700)
        redis_addr = f"127.0.0.1:{redis}"
        self.procs.start("argocd-repo-server", [
            str(BIN / "argocd-repo-server"), f"--port={repo}", f"--metrics-port={free_port()}",
            f"--redis={redis_addr}", "--address=127.0.0.1", "--metrics-address=127.0.0.1",
        ], env={**_container_env(workloads["argocd-repo-server"], objects, base), "ARGOCD_GPG_ENABLED": "false"})
        # Its metrics port is the one not on loopback: Argo CD hard-codes 0.0.0.0 for it.
        self.procs.start("argocd-application-controller", [
            str(BIN / "argocd-application-controller"), f"--repo-server=127.0.0.1:{repo}", f"--redis={redis_addr}",
            f"--metrics-port={free_port()}",
        ], env=_container_env(workloads["argocd-application-controller"], objects, base))
        self.procs.start("argocd-server", [
            str(BIN / "argocd-server"), f"--port={server}", f"--metrics-port={free_port()}", "--address=127.0.0.1",
            "--metrics-address=127.0.0.1",
            f"--repo-server=127.0.0.1:{repo}", f"--redis={redis_addr}",
        ], env=_container_env(workloads["argocd-server"], objects, base))
        self.server = f"127.0.0.1:{server}"
        self.procs.wait_until("the Argo CD API server", lambda: _https_ok(f"https://{self.server}/healthz"), 120,
                              logs=("argocd-server",))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The argocd CLI, logged in to this API server (config under the run's directory)."""
        config = self.work / "argocd-cli.yaml"
        return run([str(BIN / "argocd"), f"--config={config}", *args], check, timeout=300)


def _https_ok(url: str) -> bool:
    """GET over TLS without checking the certificate: loopback, our own server, self-signed."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=5, context=context) as r:
        return r.status == 200


#: Context names of throwaway local clusters: kind names its contexts kind-<cluster>; minikube marks
#: its entries with this provider extension (and names the context after the profile).
MINIKUBE_PROVIDER = "minikube.sigs.k8s.io"


def check_context(config: dict, force: bool = False) -> str:
    """The current context of a (minified) kubeconfig, if it is a minikube or kind profile; else a
    HarnessError (the run installs Argo CD cluster-wide and deletes it again), unless forced."""
    name = config.get("current-context") or ""
    context = next((c for c in config.get("contexts") or [] if c.get("name") == name), {})
    extensions = [e.get("extension", {}) for e in (context.get("context") or {}).get("extensions") or []]
    minikube = any(isinstance(e, dict) and e.get("provider") == MINIKUBE_PROVIDER for e in extensions)
    if minikube or name.startswith("kind-") or force:
        return name
    raise HarnessError(f"E2E_KUBECONFIG: context {name!r} is not a minikube or kind profile; the run installs "
                       "Argo CD into it and deletes it afterwards. Use a throwaway cluster, or set E2E_FORCE=1")


def remove_applied(kubectl: Kubectl, rendered: list[dict]) -> None:
    """Delete what the run applied to a cluster it did not start: the Applications (finalizers
    dropped: Argo CD is already stopped), the apps' and Argo CD's namespaces, Argo CD's cluster-wide
    objects. Best effort: every step runs even when one fails; the first failure is raised at the end."""
    errors = []

    def attempt(*args: str) -> None:
        p = kubectl(*args, check=False)
        if p.returncode:
            errors.append(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
    names = kubectl("get", "applications.argoproj.io", "-n", ARGOCD, "-o", "name", check=False).stdout.split()
    for name in names:
        attempt("patch", name, "-n", ARGOCD, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    for namespace in ("todo", ARGOCD):
        attempt("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=120s")
    for doc in rendered:
        if doc.get("kind") in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            attempt("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found")
    if errors:
        raise HarnessError("cleanup of E2E_KUBECONFIG's cluster incomplete:\n" + "\n".join(errors))


def default_repo_url() -> str:
    root = yaml.safe_load((ROOT / "argocd" / "root-app.yaml").read_text())
    return root["spec"]["source"]["repoURL"]


GIT = ["git", "-c", "user.email=e2e@todo-gitops", "-c", "user.name=Todo GitOps e2e", "-c", "commit.gpgsign=false"]


def copy_repo(dest: Path) -> None:
    """This repository's tracked and untracked files (not the ignored ones) as one commit on `main`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run([*GIT, "commit", "-q", "-m", "copy", "--no-verify"], cwd=dest, check=True)


class GitRepo:
    """A bare repo Argo CD pulls over file:// (the 'GitHub' of the test) and a checkout to merge into it."""

    def __init__(self, work: Path) -> None:
        self.checkout, self.remote = work / "checkout", work / "remote.git"
        copy_repo(self.checkout)
        subprocess.run(["git", "clone", "-q", "--bare", str(self.checkout), str(self.remote)], check=True)
        self.git("remote", "add", "origin", str(self.remote))
        self.url = f"file://{self.remote}"

    def git(self, *args: str) -> str:
        return run([*GIT, *args], cwd=self.checkout).stdout.strip()

    def merge(self, message: str, path: str, edit: Callable[[str], str]) -> str:
        """Commit an edit of one file and push it to main, as merging a pull request does; returns the sha."""
        file = self.checkout / path
        before = file.read_text()
        after = edit(before)
        if after == before:
            raise HarnessError(f"the edit for {message!r} changed nothing in {path}")
        file.write_text(after)
        self.git("commit", "-q", "-am", message)
        return self.push()

    def push(self) -> str:
        self.git("push", "-q", "origin", "main")
        return self.git("rev-parse", "HEAD")
