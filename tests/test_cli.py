"""The command line contract (DESIGN §4): exit codes, formats, --manifests, bad input."""

from __future__ import annotations

import json
import os
import tomllib
from xml.etree import ElementTree
from pathlib import Path

import jsonschema
import pytest

from conftest import ROOT, TOOLS, VERSIONS, run_cli, tool_env

GOOD = (ROOT / "tests" / "manifests" / "good.yaml").read_text()

# One defect each, planted in the hardened manifests, and the rule that must catch it.
DEFECTS = {
    "missing limit": ("limits: {cpu: 500m, memory: 256Mi}", "limits: {cpu: 500m}", "resources/missing-limits"),
    "missing readiness": ("          readinessProbe:\n            httpGet: {path: /ready, port: http}\n", "",
                          "probes/missing-readiness"),
    "probe on unexposed port": ("httpGet: {path: /health, port: http}", "httpGet: {path: /health, port: 9090}",
                                "probes/unknown-port"),
    "secretKeyRef to absent Secret": (
        "          envFrom:\n",
        "          env:\n            - name: TOKEN\n              valueFrom:\n                secretKeyRef: {name: nope, key: t}\n"
        "          envFrom:\n", "secrets/missing-secret"),
    "Service selecting no pod": ("  selector:\n    app: web\n", "  selector:\n    app: wbe\n", "refs/service-selector"),
    "latest tag": ("ghcr.io/acme/web:1.4.2", "ghcr.io/acme/web:latest", "images/latest-tag"),
    "wrong field type": ("replicas: 2", "replicas: two", "schema/invalid"),
    "unknown field": ("          ports:\n", "          imagePullPolcy: Always\n          ports:\n", "schema/invalid"),
    "removed API version": ("apiVersion: apps/v1", "apiVersion: extensions/v1beta1", "schema/removed-api"),
}


def manifests(tmp_path: Path, text: str, *extra: str):
    f = tmp_path / "m.yaml"
    f.write_text(text)
    return run_cli("--manifests", "--format", "json", str(f), *extra, cwd=tmp_path)


def test_hardened_manifests_are_clean(tmp_path):
    r = manifests(tmp_path, GOOD)
    assert r.code == 0, r.out + r.err
    assert r.json["findings"] == []
    assert r.json["summary"]["objects"] == 3


@pytest.mark.parametrize("name", DEFECTS)
def test_each_defect_is_an_error_in_its_category(tmp_path, name):
    old, new, rule = DEFECTS[name]
    assert old in GOOD, "the fixture no longer contains the text this defect replaces"
    r = manifests(tmp_path, GOOD.replace(old, new, 1))
    assert r.code == 1, r.out + r.err
    assert rule in r.rules("error"), r.json["findings"]
    hit = next(f for f in r.json["findings"] if f["rule"] == rule)
    assert hit["file"].endswith("m.yaml") and hit["line"], hit


def test_manifests_on_stdin(tmp_path):
    r = run_cli("--manifests", "--format", "json", "-", cwd=tmp_path, stdin=GOOD.replace("1.4.2", "latest"))
    assert r.code == 1
    f = next(f for f in r.json["findings"] if f["rule"] == "images/latest-tag")
    assert f["file"] == "<stdin>" and f["line"] == 47 and f["object"]["name"] == "web"


@pytest.mark.parametrize("text,rule,line", [
    ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n data: {}\n", "yaml/syntax", 5),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  name: y\n", "yaml/duplicate-key", 5),
    # in a later document of a stream: the file's line, not the document's
    ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\n"
     "metadata:\n  name: x\n  name: y\n", "yaml/duplicate-key", 10),
    ("a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
     "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]\n",
     "yaml/alias-bomb", 1),
    ("replicas: 2\nimage: web:1.0\n", "schema/not-kubernetes", 1),
    ("- just\n- a list\n", "schema/not-kubernetes", 1),
])
def test_bad_yaml_is_a_finding_with_a_line(tmp_path, text, rule, line):
    r = manifests(tmp_path, text)
    assert r.code == 1, r.out + r.err
    assert "Traceback" not in r.err
    f = next(f for f in r.json["findings"] if f["rule"] == rule)
    assert f["line"] == line and f["file"].endswith("m.yaml")


def test_non_utf8_is_a_finding(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_bytes(b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caf\xe9\n")
    r = run_cli("--manifests", "--format", "json", str(f), cwd=tmp_path)
    assert r.code == 1 and "Traceback" not in r.err
    assert r.json["findings"][0]["rule"] == "yaml/encoding" and r.json["findings"][0]["line"] == 4


def test_kubeconform_missing_is_exit_2_with_instructions(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "helm").symlink_to(TOOLS / "helm")  # helm alone: kubeconform is missing
    env = tool_env(str(bindir))
    env["PATH"] = f"{bindir}{os.pathsep}{Path(env['PATH'].split(os.pathsep)[1])}{os.pathsep}/usr/bin:/bin"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # no tools from `gitops-validate tools install`
    r = run_cli("--format", "json", env=env)
    assert r.code == 2 and r.out == ""
    # The one command that installs the pinned version, and the doctor; not this repo's `make`.
    assert "kubeconform not found" in r.err and "make" not in r.err
    assert f"kubeconform/releases/download/{VERSIONS['KUBECONFORM_VERSION']}/" in r.err  # no Go on this PATH
    assert "gitops-validate doctor" in r.err


@pytest.mark.parametrize("missing", ["helm", "kustomize"])
def test_helm_or_kustomize_missing_is_exit_2(tmp_path, missing):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in {"kubeconform", "helm", "kustomize"} - {missing}:
        (bindir / tool).symlink_to(TOOLS / tool)
    env = tool_env(str(bindir))
    env["PATH"] = f"{bindir}{os.pathsep}{Path(env['PATH'].split(os.pathsep)[1])}{os.pathsep}/usr/bin:/bin"
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    r = run_cli("--no-cache", env=env)
    assert r.code == 2 and f"{missing} not found" in r.err and "make" not in r.err and "gitops-validate doctor" in r.err


def test_bad_config_is_exit_2_with_the_reason(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rules:\n  images/latest-tagg: off\n")
    r = run_cli("--config", str(cfg))
    assert r.code == 2 and "unknown rule 'images/latest-tagg'" in r.err and "images/latest-tag" in r.err
    cfg.write_text("rules:\n  images/latest-tag: maybe\n")
    r = run_cli("--config", str(cfg))
    assert r.code == 2 and ":2:" in r.err


def test_bad_usage_is_exit_2():
    assert run_cli("--format", "xml").code == 2
    assert run_cli("--kubernetes-version", "banana").code == 2


def test_config_regrades_and_turns_off_rules(tmp_path):
    (tmp_path / ".gitops-validator.yaml").write_text("rules:\n  images/latest-tag: warning\n")
    r = manifests(tmp_path, GOOD.replace("1.4.2", "latest"))
    assert r.code == 0 and "images/latest-tag" in r.rules("warning")
    (tmp_path / ".gitops-validator.yaml").write_text("rules:\n  images/latest-tag: off\n")
    r = manifests(tmp_path, GOOD.replace("1.4.2", "latest"))
    assert r.code == 0 and r.json["findings"] == []


def test_json_shape_is_the_contract(tmp_path):
    r = manifests(tmp_path, GOOD.replace("1.4.2", "latest"))
    assert set(r.json) == {"findings", "summary"}
    assert set(r.json["summary"]) == {"errors", "warnings", "apps", "objects", "seconds"}
    f = r.json["findings"][0]
    assert set(f) == {"rule", "severity", "message", "file", "line", "object", "app", "related"}
    assert f["related"] == []  # other places the finding is about (file, line, label): see test_provenance.py
    assert set(f["object"]) == {"apiVersion", "kind", "namespace", "name"}


def test_sarif_validates_against_the_sarif_2_1_0_schema(tmp_path):
    schema_file = ROOT / ".tools" / "sarif" / "sarif-2.1.0.json"
    if not schema_file.is_file():
        pytest.fail(f"{schema_file} is missing: run `make setup`")
    f = tmp_path / "m.yaml"
    f.write_text(GOOD.replace("1.4.2", "latest").replace("replicas: 2", "replicas: two"))
    r = run_cli("--manifests", "--format", "sarif", str(f), cwd=tmp_path)
    assert r.code == 1
    doc = json.loads(r.out)
    jsonschema.validate(doc, json.loads(schema_file.read_text()))
    results = doc["runs"][0]["results"]
    assert {x["ruleId"] for x in results} >= {"images/latest-tag", "schema/invalid"}
    assert all(x["locations"][0]["physicalLocation"]["region"]["startLine"] > 0 for x in results)
    # helpUri: absolute, to the rule's heading in the published docs/rules.md (the package's Documentation URL).
    rules = {x["id"]: x["helpUri"] for x in doc["runs"][0]["tool"]["driver"]["rules"]}
    docs_url = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Documentation"]
    assert rules["images/latest-tag"] == f"{docs_url}#imageslatest-tag"
    assert "## images/latest-tag" in (ROOT / "docs" / "rules.md").read_text()
    r = run_cli("--manifests", "--format", "sarif", "--rules-url", "https://example.com/r.md", str(f), cwd=tmp_path)
    assert {x["helpUri"] for x in json.loads(r.out)["runs"][0]["tool"]["driver"]["rules"]} == {
        f"https://example.com/r.md#{rid.replace('/', '')}" for rid in rules}


def test_junit_to_an_output_file(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(GOOD.replace("1.4.2", "latest").replace("replicas: 2", "replicas: two"))
    r = run_cli("--manifests", "--format", "junit", "--output", str(tmp_path / "out.xml"), str(f), cwd=tmp_path)
    assert r.code == 1 and r.out == "" and "error" in r.err.splitlines()[-1]
    top = ElementTree.parse(tmp_path / "out.xml").getroot()
    assert top.tag == "testsuites" and int(top.get("failures")) >= 2
    failures = {c.find("failure").get("type") for c in top.iter("testcase") if c.find("failure") is not None}
    assert {"images/latest-tag", "schema/invalid"} <= failures
    f.write_text(GOOD)
    r = run_cli("--manifests", "--format", "junit", "-o", str(tmp_path / "out.xml"), str(f), cwd=tmp_path)
    top = ElementTree.parse(tmp_path / "out.xml").getroot()
    assert r.code == 0 and top.get("tests") == "1" and top.get("failures") == "0"
    r = run_cli("--manifests", "-o", str(tmp_path / "no" / "such" / "dir"), str(f), cwd=tmp_path)
    assert r.code == 2 and "--output" in r.err


def test_github_format_is_workflow_commands(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(GOOD.replace("1.4.2", "latest"))
    r = run_cli("--manifests", "--format", "github", str(f), cwd=tmp_path)
    assert r.code == 1
    line = next(x for x in r.out.splitlines() if x.startswith("::error "))
    assert f"file={f}" in line and ",line=47," in line and "title=images/latest-tag::" in line


def test_text_format_groups_by_file_and_sums_up(tmp_path):
    f = tmp_path / "m.yaml"
    f.write_text(GOOD)
    r = run_cli("--manifests", str(f), cwd=tmp_path)
    assert r.code == 0 and "\033[" not in r.out
    assert "0 errors, 0 warnings" in r.out.splitlines()[-1]
    f.write_text(GOOD.replace("1.4.2", "latest"))
    r = run_cli("--manifests", str(f), cwd=tmp_path)
    assert r.out.splitlines()[0] == str(f)
    assert "images/latest-tag" in r.out and "1 error" in r.out.splitlines()[-1]


def test_list_rules_names_every_rule():
    from gitops_validate.rules import REGISTRY
    r = run_cli("--list-rules")
    assert r.code == 0
    assert {line.split()[0] for line in r.out.splitlines()} == set(REGISTRY)
