"""What every stage produces: findings, each tied to a rule, a place and (when known) an object."""

from __future__ import annotations

import re
from enum import Enum

from .record import Frozen, Record

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


class ObjectRef(Frozen):
    __slots__ = ("apiVersion", "kind", "namespace", "name")
    apiVersion: str
    kind: str
    namespace: str | None
    name: str

    def __init__(self, apiVersion: str, kind: str, namespace: str | None, name: str) -> None:
        self._assign(apiVersion, kind, namespace, name)

    @classmethod
    def of(cls, doc: dict) -> "ObjectRef":
        meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        ns = meta.get("namespace")
        return cls(str(doc.get("apiVersion", "")), str(doc.get("kind", "")),
                   None if ns is None else str(ns), str(meta.get("name", "")))

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"


class Location(Frozen):
    """A second place a finding is about (SARIF ``relatedLocations``): the template that renders
    a value, the object that reads a declared Secret key. ``label`` says what it is, as in
    "rendered by apps/x/templates/deployment.yaml:40"."""
    __slots__ = ("file", "line", "label")
    file: str
    line: int | None
    label: str

    def __init__(self, file: str, line: int | None, label: str) -> None:
        self._assign(file, line, label)

    def __str__(self) -> str:
        return f"{self.label} {self.file}" + (f":{self.line}" if self.line else "")

    def as_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "label": self.label}


class Finding(Frozen):
    __slots__ = ("rule", "severity", "message", "file", "line", "object", "app", "related")
    rule: str
    severity: Severity
    message: str
    file: str | None
    line: int | None
    object: ObjectRef | None
    app: str | None
    #: other places the finding is about (provenance.py): not part of its identity in a baseline
    related: tuple[Location, ...]

    def __init__(self, rule: str, severity: Severity, message: str, file: str | None = None,
                 line: int | None = None, object: ObjectRef | None = None, app: str | None = None,
                 related: tuple[Location, ...] = ()) -> None:
        if not isinstance(message, str) or len(message) > MAX_MESSAGE_CHARS or message.count("\n") >= MAX_MESSAGE_LINES:
            message = bounded(str(message))
        self._assign(rule, severity, message, file, line, object, app, related)

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


class Problem(Record):
    """What a rule reports: the message, and optionally the field path it is about.

    The policy stage turns a Problem into a Finding (rule id, severity, location, object).
    """
    __slots__ = ("message", "path", "at", "related", "also", "label", "rule")
    message: str
    path: tuple
    #: another object (a Manifest) whose file the path is in, e.g. the AppProject that refuses an app
    at: object
    #: other fields the problem is about (a limit, for a request above it), for provenance
    related: tuple
    #: other places the same problem can be fixed, as (Manifest, path, label) or (Location, None,
    #: label) for a line of a file we read (a cluster fact): the finding points at the first place
    #: an override set, the others become related locations (provenance.py)
    also: tuple
    #: what the problem's own place is, when the finding points elsewhere ("read by")
    label: str
    #: a sibling rule id to report under (refs/not-checked from refs/in-cluster-url's check)
    rule: str | None

    def __init__(self, message: str, path: tuple = (), at: object = None, related: tuple = (), also: tuple = (),
                 label: str = "found at", rule: str | None = None) -> None:
        self.message = message
        self.path = path
        self.at = at
        self.related = related
        self.also = also
        self.label = label
        self.rule = rule
