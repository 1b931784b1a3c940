"""What every stage produces: findings, each tied to a rule, a place and (when known) an object."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

#: A finding's message is cut to this many lines and characters (a helm stack dump of 190 lines
#: becomes its first lines and "… N more lines"): reports stay readable and bounded.
MAX_MESSAGE_LINES = 12
MAX_MESSAGE_CHARS = 2000


def bounded(message: str, max_lines: int = MAX_MESSAGE_LINES, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to ``max_lines`` lines and about ``max_chars`` characters, saying how much was left out."""
    lines = message.splitlines() or [""]
    cut = len(lines) - max_lines
    out = "\n".join(lines[:max_lines]) if cut > 0 else message
    if len(out) > max_chars:
        more = len(out) - max_chars
        out = out[:max_chars] + f" … {more} more characters"
    return out + (f"\n… {cut} more lines" if cut > 0 else "")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with control characters (terminal escape codes among them) shown escaped, so
    repository text cannot drive the terminal or forge report lines. Newlines and tabs stay."""
    return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], text)


#: The label of the template location of a finding that points at a value file line.
RENDERED_BY = "rendered by"


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
        ns = meta.get("namespace")
        return cls(str(doc.get("apiVersion", "")), str(doc.get("kind", "")),
                   None if ns is None else str(ns), str(meta.get("name", "")))

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"


@dataclass(frozen=True)
class Location:
    """A second place a finding is about (SARIF ``relatedLocations``): the template that renders
    a value, the object that reads a declared Secret key. ``label`` says what it is, as in
    "rendered by apps/x/templates/deployment.yaml:40"."""
    file: str
    line: int | None
    label: str

    def __str__(self) -> str:
        return f"{self.label} {self.file}" + (f":{self.line}" if self.line else "")

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "label": self.label}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    object: ObjectRef | None = None
    app: str | None = None
    #: other places the finding is about (provenance.py): not part of its identity in a baseline
    related: tuple[Location, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.message, str) or len(self.message) > MAX_MESSAGE_CHARS or \
                self.message.count("\n") >= MAX_MESSAGE_LINES:
            object.__setattr__(self, "message", bounded(str(self.message)))

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
            "related": [r.as_dict() for r in self.related],
        }

    def where(self) -> str:
        """The related locations in words, for text and GitHub output: "(set at v.yaml:3,
        rendered by t.yaml:9)" when the finding points at the value that a template renders."""
        if not self.related:
            return ""
        parts = [str(r) for r in self.related]
        if self.related[0].label == RENDERED_BY and self.file:
            parts.insert(0, f"set at {self.file}" + (f":{self.line}" if self.line else ""))
        return " (" + ", ".join(parts) + ")"

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
    #: other fields the problem is about (a limit, for a request above it), for provenance
    related: tuple = field(default_factory=tuple)
    #: other places the same problem can be fixed, as (Manifest, path, label) or (Location, None,
    #: label) for a line of a file we read (a cluster fact): the finding points at the first place
    #: an override set, the others become related locations (provenance.py)
    also: tuple = field(default_factory=tuple)
    #: what the problem's own place is, when the finding points elsewhere ("read by")
    label: str = "found at"
    #: a sibling rule id to report under (refs/not-checked from refs/in-cluster-url's check)
    rule: str | None = None
