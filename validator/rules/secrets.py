"""secrets/: secrets never live in git; what the pods read from Secrets must exist in the cluster,
rendered (without data) or declared as created outside git in the cluster facts."""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from ..findings import Location, Problem, Severity
from ..model import WORKLOAD_KINDS, Manifest, containers, dig, pod_template, sequence
from ..record import Frozen
from .base import Context, Rule
from .examples import example_deployment

CATEGORY = "secrets"

#: Normalised key endings (lowercase, without ``_ - .``) that name a secret value.
SECRET_SUFFIXES = ("password", "passwd", "token", "apikey", "secretkey", "privatekey", "jwtsecret",
                   "clientsecret", "accesskey", "databaseurl", "connectionstring", "credentials")
_VAR_REF = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_.-]*\)")
#: Keys the token controller fills into a Secret of type kubernetes.io/service-account-token.
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_TOKEN_KEYS = frozenset({"token", "ca.crt", "namespace"})


#: Whole words (of a key split at ``_ - .`` and camelCase) that end a secret's name: ``DB_PASS``,
#: ``NEXTAUTH_SECRET``, ``BETTER_AUTH_SECRET``.
SECRET_LAST_WORDS = frozenset({"pass", "secret"})
#: Words after which a key names a secret (or where it lives) rather than holding it.
NAMING_WORDS = frozenset({"name", "names", "namespace", "ref", "path", "file", "dir", "mount", "keys"})
#: Words before "secret" that make the key name a Secret object (``existingSecret``).
NAMING_PREFIXES = frozenset({"existing", "use", "create"})
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

#: PEM and OpenSSH private keys, also hand-mangled ones (fewer dashes, extra spaces).
_PRIVATE_KEY = re.compile(r"-{3,}\s*BEGIN\s+(?:[A-Z0-9]+\s+)*PRIVATE\s+KEY(?:\s+BLOCK)?\s*-{3,}", re.I)
#: Well-known credential variables whose names the generic endings miss.
WELL_KNOWN_SECRET_NAMES = re.compile(r"AZURE_\w*KEY|OCI_CLI_KEY_CONTENT", re.I)
#: Well-known token formats: (what, pattern). Prefixes plus a minimum length keep ordinary words out.
TOKEN_PATTERNS = (
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})")),
    ("a GitLab token", re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("a Groq API key", re.compile(r"\bgsk_[A-Za-z0-9]{20,}")),
    ("an OpenAI or Anthropic API key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}")),
    ("a Stripe key", re.compile(r"\b[sr]k_live_[A-Za-z0-9]{16,}")),
    ("a Google API key", re.compile(r"\bAIza[A-Za-z0-9_-]{35}\b")),
)
#: A URL with user and password before the host, the password not a $(VAR) / ${VAR} reference.
_URL_PASSWORD = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:([^\s/@]+)@[^\s]")


def _words(key: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(key)]


def secret_name(key: str) -> bool:
    """Whether a key (env var name, values key, ConfigMap key) names a secret value: it ends, once
    lowercased without ``_ - .``, with a secret-ish word (password, token, apikey, databaseurl, ...),
    its last word is ``pass`` or ``secret`` (``DB_PASS``, ``NEXTAUTH_SECRET``), or it is an
    upper-case ``SECRET_*``. Keys that name a Secret object or its location (``existingSecret``,
    ``secretName``, ``SECRET_NAME``, ``tokenPath``) and a bare ``secret`` do not."""
    if not isinstance(key, str):
        return False
    words = _words(key)
    if not words or words[-1] in NAMING_WORDS:
        return False
    norm = re.sub(r"[_\-.]", "", key.lower())
    if norm.endswith(SECRET_SUFFIXES) or WELL_KNOWN_SECRET_NAMES.fullmatch(key):
        return True
    if len(words) > 1 and words[-1] in SECRET_LAST_WORDS and words[-2] not in NAMING_PREFIXES:
        return True
    return bool(re.fullmatch(r"SECRET_[A-Z0-9_]+", key))


def secret_value(value) -> str | None:
    """What a string is when it is a secret whatever its key ("a private key", "a GitHub token",
    "a URL with a password"), else None."""
    if not isinstance(value, str):
        return None
    if _PRIVATE_KEY.search(value):
        return "a private key"
    for what, pattern in TOKEN_PATTERNS:
        if pattern.search(value):
            return what
    for match in _URL_PASSWORD.finditer(value):
        password = match.group(1)
        if not (_VAR_REF.fullmatch(password) or re.fullmatch(r"\$\{[^}]*\}|\{\{.*\}\}|\*+", password)):
            return "a URL with a password"
    return None


def looks_secret(key: str, value) -> bool:
    """Whether ``key: value`` looks like a secret written out in clear text.

    True when the value is a non-empty string that is not (and does not embed, as in
    ``postgres://app:$(DB_PASSWORD)@db/app``) a ``$(VAR)`` reference and the key names a secret
    (``secret_name``), or when the value is a secret whatever the key (``secret_value``: a private
    key, a well-known token, a URL with a password).
    """
    if not isinstance(key, str) or not isinstance(value, str):
        return False
    if secret_value(value):
        return True
    value = value.strip()
    return bool(value) and secret_name(key) and not _VAR_REF.search(value)


# --- references from a pod spec to Secrets and ConfigMaps (shared with refs/) -----------------

class PodRef(Frozen):
    """One reference from a pod spec to a Secret or ConfigMap."""
    name: str
    optional: bool
    path: tuple                                  # the reference inside the object
    what: str                                    # "container 'web' env DB_URL", "volume 'certs'", ...
    keys: tuple[tuple[str, tuple], ...]          # (key read, its path)

    def __init__(self, name: str, optional: bool, path: tuple, what: str,
                 keys: tuple[tuple[str, tuple], ...] = ()) -> None:
        self._assign(name, optional, path, what, keys)


def _items(items, path: tuple) -> tuple[tuple[str, tuple], ...]:
    if not isinstance(items, list):
        return ()
    return tuple((str(it["key"]), path + ("items", i, "key")) for i, it in enumerate(items)
                 if isinstance(it, dict) and it.get("key") not in (None, ""))


def pod_refs(m: Manifest, target: str) -> Iterator[PodRef]:
    """Every reference of ``m``'s pod spec to an object of kind ``target`` ("Secret" or "ConfigMap"):
    env valueFrom, envFrom, volumes, projected volume sources, and (Secrets) imagePullSecrets."""
    found = pod_template(m)
    if not found:
        return
    pod, base = found
    secret = target == "Secret"
    key_ref, from_ref = ("secretKeyRef", "secretRef") if secret else ("configMapKeyRef", "configMapRef")
    source, name_field = ("secret", "secretName") if secret else ("configMap", "name")
    projected = "secret" if secret else "configMap"

    for c in containers(m):
        for i, env in enumerate(sequence(c.spec.get("env"))):
            ref = dig(env, "valueFrom", key_ref)
            if isinstance(ref, dict) and ref.get("name"):
                path = c.path + ("env", i, "valueFrom", key_ref)
                keys = ((str(ref["key"]), path + ("key",)),) if ref.get("key") not in (None, "") else ()
                yield PodRef(str(ref["name"]), ref.get("optional") is True, path + ("name",),
                             f"{c.label} env {env.get('name')}", keys)
        for i, env_from in enumerate(sequence(c.spec.get("envFrom"))):
            ref = env_from.get(from_ref) if isinstance(env_from, dict) else None
            if isinstance(ref, dict) and ref.get("name"):
                yield PodRef(str(ref["name"]), ref.get("optional") is True,
                             c.path + ("envFrom", i, from_ref, "name"), f"{c.label} envFrom")

    for i, vol in enumerate(sequence(pod.get("volumes"))):
        if not isinstance(vol, dict):
            continue
        vpath = base + ("volumes", i)
        src = vol.get(source)
        if isinstance(src, dict) and src.get(name_field):
            yield PodRef(str(src[name_field]), src.get("optional") is True,
                         vpath + (source, name_field), f"volume {vol.get('name')!r}",
                         _items(src.get("items"), vpath + (source,)))
        for j, s in enumerate(sequence(dig(vol, "projected", "sources"))):
            src = s.get(projected) if isinstance(s, dict) else None
            if isinstance(src, dict) and src.get("name"):
                spath = vpath + ("projected", "sources", j, projected)
                yield PodRef(str(src["name"]), src.get("optional") is True, spath + ("name",),
                             f"projected volume {vol.get('name')!r}", _items(src.get("items"), spath))

    if secret:
        for i, ips in enumerate(sequence(pod.get("imagePullSecrets"))):
            if isinstance(ips, dict) and ips.get("name"):
                yield PodRef(str(ips["name"]), False, base + ("imagePullSecrets", i, "name"),
                             "imagePullSecrets")


def qualified(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _external(ctx: Context, namespace: str | None, name: str) -> frozenset[str] | None:
    """The keys of an external Secret declared in the cluster facts, or None when not declared.
    An object without a namespace matches a declaration of that name in any namespace."""
    declared = ctx.facts.external_secrets if ctx.facts else {}
    if (namespace, name) in declared:
        return frozenset(declared[(namespace, name)])
    if namespace is None:
        for (_, n), keys in declared.items():
            if n == name:
                return frozenset(keys)
    return None


def secret_keys(ctx: Context, namespace: str | None, name: str) -> tuple[bool, frozenset[str] | None]:
    """(exists, keys): whether the Secret is rendered or declared, and the keys it holds
    (None when they are not known)."""
    rendered = ctx.find("Secret", namespace, name)
    if rendered is not None:
        if rendered.doc.get("type") == SA_TOKEN_TYPE:
            return True, SA_TOKEN_KEYS
        keys = set()
        for field in ("data", "stringData"):
            if isinstance(rendered.doc.get(field), dict):
                keys.update(str(k) for k in rendered.doc[field])
        return True, frozenset(keys)
    keys = _external(ctx, namespace, name)
    if keys is None:
        return False, None
    return True, keys or None  # a declaration without keys: keys unknown


def _where_declared(ctx: Context) -> str:
    if ctx.facts and ctx.facts.directory:
        return f"externalSecrets of {ctx.facts.directory}/cluster.yaml"
    return "the cluster facts' externalSecrets"


def check_missing_secret(m: Manifest, ctx: Context) -> Iterable[Problem]:
    ns = m.namespace
    for ref in pod_refs(m, "Secret"):
        if ref.optional or secret_keys(ctx, ns, ref.name)[0]:
            continue
        known = {s.name for s in ctx.in_namespace("Secret", ns)}
        if ctx.facts:
            known |= {n for (sns, n) in ctx.facts.external_secrets if sns == ns}
        import difflib  # only for a missing reference: not on a run's imports
        close = difflib.get_close_matches(ref.name, sorted(known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        yield Problem(f"{ref.what} references Secret {qualified(ns, ref.name)}, which is neither rendered "
                      f"nor declared as created outside git; {hint}create it outside git and declare it "
                      f"(with its keys) in {_where_declared(ctx)}", ref.path)


def check_missing_key(m: Manifest, ctx: Context) -> Iterable[Problem]:
    ns = m.namespace
    for ref in pod_refs(m, "Secret"):
        if ref.optional or not ref.keys:
            continue
        exists, keys = secret_keys(ctx, ns, ref.name)
        if not exists or keys is None:
            continue
        read = {k for r in pod_refs(m, "Secret") if r.name == ref.name for k, _ in r.keys}
        for key, path in ref.keys:
            if key not in keys:
                held = ", ".join(sorted(keys)) or "no keys"
                yield Problem(f"{ref.what} reads key {key!r} of Secret {qualified(ns, ref.name)}, which "
                              f"holds {held}; fix the key, or add it to the Secret (and to its "
                              f"declaration in {_where_declared(ctx)})", path,
                              also=_renamed_declaration(ctx, ns, ref.name, key, keys - read), label="read by")


def _renamed_declaration(ctx: Context, namespace: str | None, name: str, key: str, unread: frozenset[str]) -> tuple:
    """The cluster.yaml line of a declared key that looks like ``key`` renamed (close to it, and
    read by nobody in this object), for a Secret declared outside git: the place to fix."""
    if ctx.facts is None or ctx.facts.directory is None or ctx.find("Secret", namespace, name) is not None:
        return ()
    lines = ctx.facts.external_secret_lines.get((str(namespace), name), {})
    import difflib
    close = difflib.get_close_matches(key, sorted(unread), n=1)
    if not close or lines.get(close[0]) is None:
        return ()
    return ((Location(f"{ctx.facts.directory}/cluster.yaml", lines[close[0]], "declared in"), None,
             "declared in"),)


def check_data_in_git(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "Secret" or m.api_version != "v1":
        return
    for field in ("data", "stringData"):
        data = m.doc.get(field)
        if data:  # non-empty mapping (or anything else that is not empty)
            keys = ", ".join(sorted(str(k) for k in data)) if isinstance(data, dict) else "?"
            yield Problem(f"Secret {qualified(m.namespace, m.name)} has {field} in git (keys: {keys}); "
                          "secrets never live in git, rendered from values or not: create the Secret "
                          f"outside git and declare it in {_where_declared(ctx)}", (field,))


def _why_secret(key: str, value: str) -> str:
    what = secret_value(value)
    return f"is {what}" if what else "looks like a secret (by its name)"


def check_literal_value(m: Manifest, ctx: Context) -> Iterable[Problem]:
    for c in containers(m):
        for i, env in enumerate(sequence(c.spec.get("env"))):
            if isinstance(env, dict) and looks_secret(str(env.get("name", "")), env.get("value")):
                yield Problem(f"{c.label} env {env.get('name')} has a literal value that "
                              f"{_why_secret(str(env.get('name', '')), env['value'])}; read it from a Secret "
                              "(valueFrom.secretKeyRef) created outside git", c.path + ("env", i, "value"))


def check_configmap_data(m: Manifest, ctx: Context) -> Iterable[Problem]:
    if m.kind != "ConfigMap":
        return
    data = m.doc.get("data")
    for key, value in (data.items() if isinstance(data, dict) else ()):
        if looks_secret(str(key), value):
            yield Problem(f"ConfigMap {qualified(m.namespace, m.name)} key {key} "
                          f"{_why_secret(str(key), value)}; ConfigMaps are stored and shown in clear text: "
                          "move it to a Secret created outside git", ("data", key))


# --- examples -------------------------------------------------------------------------------
# The token controller fills a Secret of type service-account-token: a Secret in git without data.
_TOKEN_SECRET = """apiVersion: v1
kind: Secret
metadata:
  name: web-token
  annotations: {kubernetes.io/service-account.name: web}
type: kubernetes.io/service-account-token
"""


def _reads(env: str, extra_pod: dict | None = None) -> str:
    return example_deployment(pod=extra_pod, container={"env": env})


# Built by concatenation: no secret-looking literal in the source (detect-secrets runs in pre-commit).
_PEM = "-----BEGIN " + "PRIVATE KEY-----\\nMIIEv...\\n-----END " + "PRIVATE KEY-----"
_CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\ndata:\n  LOG_LEVEL: info\n%s"

_ENV_REF = "[{name: API_TOKEN, valueFrom: {secretKeyRef: {name: %s, key: %s}}}]"

RULES = [
    Rule("secrets/missing-secret", Severity.ERROR,
         "a secretKeyRef, envFrom secretRef, secret volume, projected secret or imagePullSecret naming a "
         "Secret that is neither rendered nor declared as created outside git",
         "A pod that reads a missing Secret never starts (CreateContainerConfigError, or a volume that "
         "never mounts); a missing imagePullSecret makes pulls fail. Secrets created outside git "
         "(`make bootstrap`, a secrets operator) are declared with their keys in the cluster facts "
         "(`externalSecrets` of `clusters/<cluster>/cluster.yaml`) so they can be checked offline. "
         "References marked `optional: true` are not checked.",
         _TOKEN_SECRET + "---\n" + _reads(_ENV_REF % ("web-tokn", "token")),
         _TOKEN_SECRET + "---\n" + _reads(_ENV_REF % ("web-token", "token")),
         check_missing_secret, kinds=WORKLOAD_KINDS),
    Rule("secrets/missing-key", Severity.ERROR,
         "a secretKeyRef key or secret volume item key that the Secret (rendered or declared) does not hold",
         "A missing key stops the container from starting (CreateContainerConfigError: couldn't find "
         "key) just like a missing Secret, but only on the cluster, after the merge. The keys of a "
         "Secret created outside git come from its declaration in the cluster facts.",
         _TOKEN_SECRET + "---\n" + _reads(_ENV_REF % ("web-token", "tokn")),
         _TOKEN_SECRET + "---\n" + _reads(_ENV_REF % ("web-token", "token")),
         check_missing_key, kinds=WORKLOAD_KINDS),
    Rule("secrets/data-in-git", Severity.ERROR,
         "a Secret with `data` or `stringData` in git, written by hand or rendered by a chart",
         "Anything in git is readable by everyone with access to the repository, forever (history "
         "keeps it after a revert), and base64 is not encryption. Create Secrets outside git "
         "(`make bootstrap` from a local .env, a secrets operator) and declare them in the cluster "
         "facts. A service-account-token Secret without data, which the cluster fills, is fine.",
         "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\ntype: Opaque\n"
         "stringData: {JWT_SECRET: \"...\"}\n",
         _TOKEN_SECRET,
         check_data_in_git, kinds=frozenset({"Secret"})),
    Rule("secrets/literal-value", Severity.ERROR,
         "a container env var with a literal value whose name looks secret (…PASSWORD, …TOKEN, "
         "…API_KEY, DATABASE_URL, …_SECRET, SECRET_*, …_PASS) or that is a private key, a well-known "
         "token or a URL with a password whatever the name",
         "A literal env value is part of the manifest: it lands in git, in Argo CD's UI and diff, and "
         "in `kubectl get -o yaml` for everyone who can read the Deployment. Read secret values from a "
         "Secret with `valueFrom.secretKeyRef` instead.",
         _reads("[{name: API_TOKEN, value: 'sk-live-4f9a2c'}]"),
         _TOKEN_SECRET + "---\n" + _reads(_ENV_REF % ("web-token", "token")),
         check_literal_value, kinds=WORKLOAD_KINDS),
    Rule("secrets/configmap-data", Severity.ERROR,
         "a ConfigMap data entry whose key names a secret (…PASSWORD, …TOKEN, …_SECRET, SECRET_*, "
         "…_PASS) or whose value is a private key, a well-known token (GitHub, GitLab, Slack, AWS, "
         "Groq, OpenAI, Stripe, Google) or a URL with a password",
         "A ConfigMap is not meant for secrets: it lands in git, Argo CD shows it in clear text in "
         "its UI and diffs, and every pod and user allowed to read ConfigMaps can read it. Put the "
         "value in a Secret created outside git and reference it from the pod.",
         _CONFIGMAP % f'  TLS_KEY: "{_PEM}"\n',
         _CONFIGMAP % "  DATABASE_HOST: db.example.com\n",
         check_configmap_data, kinds=frozenset({"ConfigMap"})),
]
