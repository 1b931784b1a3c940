"""The validator's configuration (``.gitops-validator.yaml``), itself checked with jsonschema.

A config that cannot be read or does not fit the schema is not a finding but a reason the
validator cannot run (exit 2), because every later result would depend on it.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from . import CONFIG_NAME as DEFAULT_NAME
from .findings import Severity
from .record import Frozen, Record

DEFAULT_KUBERNETES_VERSION = "1.35.0"

_SECRET = {
    "type": "object", "additionalProperties": False, "required": ["namespace", "name", "keys"],
    "properties": {"namespace": {"type": "string"}, "name": {"type": "string"},
                   "keys": {"type": "array", "items": {"type": "string"}}},
}

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "repoURLs": {"type": "array", "items": {"type": "string"},
                     "description": "URLs under which Argo CD knows this repository"},
        "kubernetesVersion": {"type": "string", "pattern": r"^v?\d+\.\d+(\.\d+)?$"},
        "schemaDir": {"type": "string"},
        "allowedRegistries": {"type": "array", "items": {"type": "string"}},
        "limits": {
            "type": "object", "additionalProperties": False,
            "description": "bounds on a run (docs/guarantees.md); hitting one is a finding or exit 2, never a hang",
            "properties": {
                "maxAppDepth": {"type": "integer", "minimum": 1},
                "maxApplications": {"type": "integer", "minimum": 1},
                "deadlineSeconds": _POSITIVE,
                "renderTimeoutSeconds": _POSITIVE,
                "cacheMaxMegabytes": {"type": "number", "minimum": 0},
            },
        },
        "exclude": {"type": "array", "items": {"type": "string"},
                    "description": "path globs whose findings are not reported"},
        "rules": {"type": "object",
                  "description": "rule id or id glob (secrets/*) -> severity, or {severity, exclude: [path globs]}",
                  "additionalProperties": {"oneOf": [
                      {"enum": ["error", "warning", "off"]},
                      {"type": "object", "additionalProperties": False, "properties": {
                          "severity": {"enum": ["error", "warning", "off"]},
                          "exclude": {"type": "array", "items": {"type": "string"}}}}]}},
        "clusters": {
            "type": "object",
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "path": {"type": "string"},
                    "externalSecrets": {"type": "array", "items": _SECRET},
                },
            },
        },
    },
}


class ConfigError(Exception):
    pass


class ClusterConfig(Record):
    path: str
    external_secrets: list[dict]

    def __init__(self, path: str, external_secrets: list[dict] | None = None) -> None:
        self.path = path
        self.external_secrets = [] if external_secrets is None else external_secrets


class Limits(Frozen):
    """Every bound on a run, with its default (documented in docs/guarantees.md)."""
    max_app_depth: int               # levels of app-of-apps below an Application in a file
    max_applications: int            # Applications in one run, from files, charts and ApplicationSets
    deadline: float                  # seconds for the whole run
    render_timeout: float            # seconds per helm template (Argo CD's ARGOCD_EXEC_TIMEOUT default)
    cache_max_mb: float              # render cache size; least recently used entries go first

    def __init__(self, max_app_depth: int = 10, max_applications: int = 1000, deadline: float = 600,
                 render_timeout: float = 90, cache_max_mb: float = 100) -> None:
        self._assign(max_app_depth, max_applications, deadline, render_timeout, cache_max_mb)

    @classmethod
    def of(cls, data: dict) -> "Limits":
        names = {"maxAppDepth": "max_app_depth", "maxApplications": "max_applications",
                 "deadlineSeconds": "deadline", "renderTimeoutSeconds": "render_timeout",
                 "cacheMaxMegabytes": "cache_max_mb"}
        return cls(**{names[k]: v for k, v in data.items()})


class Config(Record):
    repo_urls: tuple[str, ...]
    kubernetes_version: str
    schema_dir: str | None
    allowed_registries: tuple[str, ...]
    severities: dict[str, Severity | None]
    exclude: tuple[str, ...]
    rule_exclude: dict[str, tuple[str, ...]]
    clusters: dict[str, ClusterConfig]
    limits: Limits
    source: str | None

    def __init__(self, repo_urls: tuple[str, ...] = (), kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
                 schema_dir: str | None = None, allowed_registries: tuple[str, ...] = (),
                 severities: dict[str, Severity | None] | None = None, exclude: tuple[str, ...] = (),
                 rule_exclude: dict[str, tuple[str, ...]] | None = None,
                 clusters: dict[str, ClusterConfig] | None = None, limits: Limits | None = None,
                 source: str | None = None) -> None:
        self.repo_urls = repo_urls
        self.kubernetes_version = kubernetes_version
        self.schema_dir = schema_dir
        self.allowed_registries = allowed_registries
        self.severities = {} if severities is None else severities
        self.exclude = exclude
        self.rule_exclude = {} if rule_exclude is None else rule_exclude
        self.clusters = {} if clusters is None else clusters
        self.limits = Limits() if limits is None else limits
        self.source = source


def normalize_url(url: str) -> str:
    """Compare repository URLs the way people write them: scheme, user, case and `.git` aside."""
    u = url.strip().lower().rstrip("/").removesuffix(".git")
    u = re.sub(r"^[a-z+]+://", "", u).split("@", 1)[-1]
    return re.sub(r"^([^/:]+):(?!\d)", r"\1/", u)  # scp-like git@host:org/repo


def _is_glob(rule: str) -> bool:
    return any(c in rule for c in "*?[")


def _valid_before(memo: Path | None, data: object) -> Path | None:
    """The marker saying that this config's data passed SCHEMA before (in the render cache's folder,
    by a digest of the schema, the data and the validator's version), or None when it cannot be named."""
    if memo is None:
        return None
    import hashlib
    import json
    from . import __version__
    try:
        text = json.dumps([__version__, SCHEMA, data], sort_keys=True)
    except (TypeError, ValueError, RecursionError):  # keys that are not text (a malformed config): no marker
        return None
    return memo / f"config-{hashlib.sha256(text.encode()).hexdigest()}.valid"


def load(path: Path | None, known_rules: set[str], memo: Path | None = None) -> Config:
    """The config at ``path``. With ``memo`` (the render cache's folder), a config whose data passed
    the schema before is not validated again: jsonschema is the largest import of a warm run."""
    from .schemastore import normalize_version
    from .yamlio import YamlProblem, decode, load_one

    if path is None or not path.exists():
        return Config()
    try:
        doc = load_one(decode(path.read_bytes()))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except YamlProblem as e:
        raise ConfigError(f"{path}:{e.line or 1}: {e.message}") from None
    data = {} if doc is None or doc.data is None else doc.data
    if isinstance(data, dict) and isinstance(data.get("rules"), dict):
        # YAML 1.1 reads a bare `off` as false; accept it as the word it was meant to be.
        data["rules"] = {k: "off" if v is False else v for k, v in data["rules"].items()}
        for v in data["rules"].values():
            if isinstance(v, dict) and v.get("severity") is False:
                v["severity"] = "off"
    marker = _valid_before(memo, data)
    if marker is None or not marker.is_file():
        import jsonschema  # here, not at the top: `gitops-validate --help` does not need it (nor yaml)
        errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            where = doc.line_of(list(e.path)) if doc else None
            loc = "/".join(str(p) for p in e.path) or "(top level)"
            raise ConfigError(f"{path}:{where or 1}: {loc}: {e.message}")
        if marker is not None:
            try:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.touch()
            except OSError:
                pass  # no marker: validated again next time
    sev: dict[str, Severity | None] = {}
    rule_exclude: dict[str, tuple[str, ...]] = {}
    # Globs first, exact ids last: `secrets/*: warning` then `secrets/literal-value: error` means what it says.
    for key, value in sorted((data.get("rules") or {}).items(), key=lambda kv: (not _is_glob(kv[0]), kv[0])):
        ids = sorted(fnmatch.filter(known_rules, key)) if _is_glob(key) else [key]
        if not ids or not set(ids) <= known_rules:
            import difflib  # only for an unknown rule id
            hint = difflib.get_close_matches(key, known_rules, 1)
            raise ConfigError(f"{path}: unknown rule {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        setting = value if isinstance(value, dict) else {"severity": value}
        for rule in ids:
            if "severity" in setting:
                sev[rule] = None if setting["severity"] == "off" else Severity(setting["severity"])
            if setting.get("exclude"):
                rule_exclude[rule] = rule_exclude.get(rule, ()) + tuple(setting["exclude"])
    clusters = {name: ClusterConfig(c.get("path", f"clusters/{name}"), list(c.get("externalSecrets") or []))
                for name, c in (data.get("clusters") or {}).items()}
    return Config(
        repo_urls=tuple(data.get("repoURLs") or ()),
        kubernetes_version=normalize_version(data.get("kubernetesVersion") or DEFAULT_KUBERNETES_VERSION),
        schema_dir=data.get("schemaDir"),
        allowed_registries=tuple(data.get("allowedRegistries") or ()),
        severities=sev,
        exclude=tuple(data.get("exclude") or ()),
        rule_exclude=rule_exclude,
        clusters=clusters,
        limits=Limits.of(data.get("limits") or {}),
        source=str(path),
    )
