"""Stage 5, report: text (grouped by file), JSON (DESIGN §4), SARIF 2.1.0, GitHub workflow commands."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Callable, TextIO

from . import __version__
from .findings import Finding, Severity, printable
from .record import Record


class Summary(Record):
    errors: int
    warnings: int
    apps: int
    objects: int
    seconds: float

    def __init__(self, errors: int, warnings: int, apps: int, objects: int, seconds: float) -> None:
        self.errors = errors
        self.warnings = warnings
        self.apps = apps
        self.objects = objects
        self.seconds = seconds

    @classmethod
    def of(cls, findings: list[Finding], apps: int, objects: int, seconds: float) -> "Summary":
        errors = sum(f.severity is Severity.ERROR for f in findings)
        return cls(errors, len(findings) - errors, apps, objects, round(seconds, 3))

    def line(self) -> str:
        def n(k: int, word: str) -> str:
            return f"{k} {word}{'' if k == 1 else 's'}"
        return (f"{n(self.errors, 'error')}, {n(self.warnings, 'warning')} in {n(self.apps, 'app')} "
                f"({n(self.objects, 'object')}) in {self.seconds:.2f}s")


_COLOURS = {Severity.ERROR: "\033[31m", Severity.WARNING: "\033[33m"}


def text(findings: list[Finding], summary: Summary, out: TextIO, colour: bool) -> None:
    def c(s: str, code: str) -> str:
        return f"{code}{s}\033[0m" if colour else s
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_file[f.file or "<no file>"].append(f)
    for file in sorted(by_file):
        out.write(c(printable(file), "\033[1m") + "\n")
        for f in sorted(by_file[file], key=Finding.sort_key):
            where = f"{f.line}" if f.line else "-"
            ctx = ", ".join(x for x in (f"app {f.app}" if f.app else "", str(f.object) if f.object else "") if x)
            # repo text (messages, names, paths) is printed escaped: it cannot drive the terminal
            out.write(f"  {where:>5}  {c(f.severity.value, _COLOURS[f.severity]):<7}  {printable(f.message + f.where())}  "
                      f"{c(f.rule, chr(27) + '[2m')}" + (f"  [{printable(ctx)}]" if ctx else "") + "\n")
        out.write("\n")
    ok = summary.errors == 0
    out.write(c(("✓ " if ok else "✗ ") + summary.line(), "\033[32m" if ok else "\033[31m") + "\n")


def as_json(findings: list[Finding], summary: Summary, out: TextIO, colour: bool = False,
            extra: dict | None = None) -> None:
    # one write of the whole text: json.dump writes each piece on its own (1,336 findings of
    # --manifests at 500 apps: 93 ms to stdout, 27 ms this way; the same text)
    out.write(json.dumps({"findings": [f.as_dict() for f in sorted(findings, key=Finding.sort_key)],
                          "summary": summary.__dict__, **(extra or {})}, indent=2, default=str) + "\n")


def rules_url() -> str:
    """Where docs/rules.md is published: the package's Documentation URL (pyproject project.urls)."""
    from importlib.metadata import PackageNotFoundError, metadata
    try:
        urls = metadata("todo-gitops-validator").get_all("Project-URL") or []
    except PackageNotFoundError:
        urls = []
    docs = [u.split(",", 1)[1].strip() for u in urls if u.lower().startswith("documentation,")]
    return docs[0] if docs else "https://github.com/todo-chatbot/todo-gitops/blob/main/docs/rules.md"


def sarif(findings: list[Finding], summary: Summary, out: TextIO, colour: bool = False,
          rules_url: str | None = None) -> None:
    from .docs import anchor
    from .rules import REGISTRY
    base = rules_url or globals()["rules_url"]()
    used = sorted({f.rule for f in findings})
    rules = [{"id": rid, "name": rid.replace("/", "-"),
              "shortDescription": {"text": REGISTRY[rid].summary if rid in REGISTRY else rid},
              "fullDescription": {"text": REGISTRY[rid].why if rid in REGISTRY else rid},
              "helpUri": f"{base}#{anchor(rid)}",
              "defaultConfiguration": {"level": REGISTRY[rid].severity.value if rid in REGISTRY else "error"}}
             for rid in used]
    index = {rid: i for i, rid in enumerate(used)}
    results = []
    for f in sorted(findings, key=Finding.sort_key):
        r = {"ruleId": f.rule, "ruleIndex": index[f.rule], "level": f.severity.value,
             "message": {"text": f.message + (f" (app {f.app}, {f.object})" if f.app and f.object else "")}}
        if f.file:
            region = {"startLine": f.line} if f.line else {}
            loc = {"physicalLocation": {"artifactLocation": {"uri": f.file, "uriBaseId": "%SRCROOT%"}}}
            if region:
                loc["physicalLocation"]["region"] = region
            r["locations"] = [loc]
        if f.related:  # SARIF 2.1.0 §3.27.22: each with an id unique in the result and a message
            r["relatedLocations"] = [
                {"id": i, "message": {"text": rel.label},
                 "physicalLocation": {"artifactLocation": {"uri": rel.file, "uriBaseId": "%SRCROOT%"},
                                      **({"region": {"startLine": rel.line}} if rel.line else {})}}
                for i, rel in enumerate(f.related)]
        results.append(r)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "gitops-validate", "version": __version__,
                                "informationUri": "https://github.com/todo-chatbot/todo-gitops", "rules": rules}},
            "results": results,
        }],
    }
    out.write(json.dumps(doc, indent=2) + "\n")   # one write, as in as_json


_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def junit(findings: list[Finding], summary: Summary, out: TextIO, colour: bool = False) -> None:
    """JUnit XML: a test suite per file, a test case per finding (errors fail, warnings pass with the
    message as output); a clean run is one passing case, so CI shows that something was checked."""
    from xml.etree import ElementTree as ET

    def clean(s: str) -> str:
        return _NOT_XML.sub("?", s)
    by_file: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_file[f.file or "<no file>"].append(f)
    top = ET.Element("testsuites", name="gitops-validate", tests=str(max(1, len(findings))),
                     failures=str(summary.errors), time=f"{summary.seconds:.3f}")
    if not findings:
        suite = ET.SubElement(top, "testsuite", name="gitops-validate", tests="1", failures="0")
        ET.SubElement(ET.SubElement(suite, "testcase", classname="gitops-validate", name="validate"),
                      "system-out").text = clean(summary.line())
    for file in sorted(by_file):
        fs = sorted(by_file[file], key=Finding.sort_key)
        suite = ET.SubElement(top, "testsuite", name=clean(file), tests=str(len(fs)),
                              failures=str(sum(f.severity is Severity.ERROR for f in fs)))
        for f in fs:
            where = f"{file}:{f.line}" if f.line else file
            case = ET.SubElement(suite, "testcase", classname=clean(file),
                                 name=clean(f"{f.rule} {where}" + (f" {f.object}" if f.object else "")))
            if f.severity is Severity.ERROR:
                ET.SubElement(case, "failure", type=f.rule, message=clean(f.message)).text = clean(
                    f"{where}: {f.message}{f.where()}" + (f" (app {f.app})" if f.app else ""))
            else:
                ET.SubElement(case, "system-out").text = clean(f"warning: {where}: {f.message}")
    ET.indent(top)
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(top, encoding="unicode") + "\n")


def _escape(s: str, prop: bool = False) -> str:
    s = printable(s).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return s.replace(":", "%3A").replace(",", "%2C") if prop else s


def github(findings: list[Finding], summary: Summary, out: TextIO, colour: bool = False) -> None:
    for f in sorted(findings, key=Finding.sort_key):
        props = [f"title={_escape(f.rule, True)}"]
        if f.file:
            props.insert(0, f"file={_escape(f.file, True)}")
            if f.line:
                props.insert(1, f"line={f.line}")
        out.write(f"::{f.severity.value} {','.join(props)}::{_escape(f.message + f.where())}\n")
    out.write(summary.line() + "\n")


FORMATS: dict[str, Callable[[list[Finding], Summary, TextIO, bool], None]] = {
    "text": text, "json": as_json, "sarif": sarif, "github": github, "junit": junit,
}
