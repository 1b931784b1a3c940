"""What every stage produces: findings, each tied to a rule, a place and (when known) an object."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class ObjectRef:
    apiVersion: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, doc: dict) -> "ObjectRef":
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        return cls(str(doc.get("apiVersion", "")), str(doc.get("kind", "")),
                   meta.get("namespace"), str(meta.get("name", "")))

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    object: ObjectRef | None = None
    app: str | None = None

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "severity": self.severity.value,
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "object": None if self.object is None else {
                "apiVersion": self.object.apiVersion, "kind": self.object.kind,
                "namespace": self.object.namespace, "name": self.object.name},
            "app": self.app,
        }

    def sort_key(self) -> tuple:
        return (self.file or "\uffff", self.line or 0, self.rule, self.message)


@dataclass
class Problem:
    """What a rule reports: the message, and optionally the field path it is about.

    The policy stage turns a Problem into a Finding (rule id, severity, location, object).
    """
    message: str
    path: tuple = field(default_factory=tuple)
    #: another object (a Manifest) whose file the path is in, e.g. the AppProject that refuses an app
    at: object = None
