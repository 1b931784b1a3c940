"""Start-up stays light, and `make bench` keeps working (its quick mode; the real one is not part of
`make test`). Nothing here asserts a wall time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import CLI, ROOT, tool_env

#: Modules that `--help` and `--version` must not load (together most of the start-up time).
HEAVY = ("yaml", "jsonschema", "referencing", "gitops_validate.pipeline", "gitops_validate.rules", "gitops_validate.yamlio")


def _imported(*args: str) -> set[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", str(CLI), *args], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "usage: gitops-validate" in p.stdout or "gitops-validate 0." in p.stdout or "schema/invalid" in p.stdout, p.stdout
    return {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_load_no_heavy_module(flag: str):
    modules = _imported(flag)
    assert "gitops_validate.cli" in modules        # the measurement sees our imports at all
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == [], f"{flag} imports {heavy}"
    # nor anything of ours but the CLI, nor the standard library's heavier modules: argparse is the start-up
    ours = sorted(m for m in modules if m.startswith("gitops_validate.") and m != "gitops_validate.cli")
    assert ours == [], f"{flag} imports {ours}"
    stdlib = sorted(modules & {"dataclasses", "inspect", "subprocess", "json", "hashlib", "difflib", "tempfile", "threading",
                               "pathlib", "importlib.util"})
    assert stdlib == [], f"{flag} imports {stdlib}"


def test_the_venv_runs_this_checkout_without_setuptools_editable_finder():
    """`make setup` leaves the package reachable by a plain path in its .pth (a symlink to
    validator/), so the console script and the pre-commit hook run this checkout's code, a new
    module included, and no interpreter start imports the editable finder (with pathlib and
    importlib.util: a third of `--help`)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-c",
                        "import os, sys, gitops_validate.cli as c; print(os.path.realpath(c.__file__)); "
                        "print(*sorted(type(f).__module__ for f in sys.meta_path))"],
                       capture_output=True, text=True, timeout=60, check=True)
    where, finders = p.stdout.splitlines()
    assert where == str(ROOT / "validator" / "cli.py")
    assert "editable" not in finders + p.stderr, (finders, [line for line in p.stderr.splitlines() if "editable" in line])
    hook = (ROOT / ".pre-commit-config.yaml").read_text()
    assert "entry: scripts/gitops-validate\n" in hook   # which execs .venv/bin/gitops-validate: one interpreter


def test_list_rules_loads_the_rules_but_not_yaml_nor_jsonschema():
    modules = _imported("--list-rules")
    assert "gitops_validate.rules" in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY[:3] or m.startswith(("gitops_validate.pipeline", "gitops_validate.yamlio")))
    assert heavy == [], f"--list-rules imports {heavy}"


def test_a_warm_run_imports_no_jsonschema_and_a_bad_config_is_still_refused(repo_copy, tmp_path):
    """The config's schema check is remembered in the cache by the config's data (jsonschema is the
    largest import of a warm run); any other data is checked again."""
    env = tool_env() | {"GITOPS_VALIDATE_CACHE": str(tmp_path / "cache")}

    def run(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
        p = subprocess.run([sys.executable, "-X", "importtime", str(CLI), "--repo", str(repo_copy), *args],
                           env=env, capture_output=True, text=True, timeout=300)
        return p, {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}

    cold, cold_modules = run()
    assert cold.returncode == 0 and "jsonschema" in cold_modules, cold.stderr[-2000:]
    warm, warm_modules = run()
    assert warm.returncode == 0, warm.stderr[-2000:]
    assert "gitops_validate.pipeline" in warm_modules
    assert not {m for m in warm_modules if m.split(".")[0] in ("jsonschema", "referencing")}, warm_modules
    # nor what only a render (a thread pool, and the logging it imports) or a schema build needs
    assert not warm_modules & {"concurrent.futures", "logging", "zipfile", "difflib"}, warm_modules
    # nor dataclasses (record.py) and what it loads
    assert not warm_modules & {"dataclasses", "inspect", "ast"}, warm_modules
    config = repo_copy / ".gitops-validator.yaml"
    config.write_text(config.read_text() + "limits:\n  deadlineSeconds: soon\n")
    bad, _ = run()
    assert bad.returncode == 2 and "deadlineSeconds" in bad.stderr, bad.stderr[-2000:]
    assert run("--no-cache")[0].returncode == 2


def test_the_cli_names_every_report_format():
    """cli.FORMATS is spelled out so that `--help` need not import the report: it must stay report.FORMATS' names."""
    from gitops_validate import cli, report

    assert tuple(sorted(report.FORMATS)) == cli.FORMATS


def test_bench_quick_mode_prints_a_table():
    """scripts/bench.py --quick: tiny synthetic repos, our runs, the floor and kubeconform, a table."""
    p = subprocess.run([sys.executable, str(ROOT / "scripts/bench.py"), "--quick", "--no-write"], cwd=ROOT,
                       env=tool_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    table = [line for line in p.stdout.splitlines() if line.startswith("|")]
    assert len(table) >= 3, p.stdout       # header, rule, at least one row
    assert "kubeconform alone" in table[0] and "floor" in table[0]


def test_a_path_scoped_run_checks_only_the_values_of_apps_in_scope(tmp_path, monkeypatch):
    """Pre-commit on one values file: the other apps are rendered (from the cache) for cross-app
    references, but their values are not checked again; a whole-repo run still checks them all."""
    from gitops_validate import config as config_mod, pipeline, schema
    from gitops_validate.rules import REGISTRY
    import synth

    repo = synth.make_repo(tmp_path / "repo", 4, defects=False)
    bad = repo / "clusters/minikube/values/backend2.yaml"
    bad.write_text(bad.read_text().replace("replicaCount: 2", "replicaCount: two"))   # a values/schema error
    checked: list[str] = []
    real = schema.check_values

    def spy(repo_dir, req, *known):
        checked.append(req.app)
        return real(repo_dir, req, *known)

    monkeypatch.setattr(schema, "check_values", spy)
    for k, v in tool_env().items():
        monkeypatch.setenv(k, v)
    cfg = config_mod.load(repo / ".gitops-validator.yaml", set(REGISTRY))

    def run(*paths: str) -> list:
        checked.clear()
        opts = pipeline.Options(repo=repo, config=cfg, paths=list(paths), cache_dir=tmp_path / "cache")
        return pipeline.run(opts).findings

    whole = run()
    assert sorted(checked) == ["backend0", "backend2", "frontend1", "frontend3", "root-minikube"]
    assert [f.app for f in whole if f.rule == "values/schema"] == ["backend2"]
    changed = repo / "clusters/minikube/values/frontend1.yaml"
    changed.write_text(changed.read_text() + "# edited\n")   # unchanged, its results would come from the cache
    scoped = run("clusters/minikube/values/frontend1.yaml")
    assert checked == ["frontend1"]
    assert not [f for f in scoped if f.severity.value == "error"], scoped


def test_pyyamls_reader_regex_is_compiled_on_first_use_and_finds_what_pyyamls_does(repo_copy, tmp_path):
    """yamlio defers the regular expression PyYAML's pure-Python reader compiles at import (a tenth
    of a warm run): a warm run never compiles it, and compiled on first use it is PyYAML's own."""
    import re

    import yaml
    import yaml.reader

    from gitops_validate import yamlio

    env = tool_env() | {"GITOPS_VALIDATE_CACHE": str(tmp_path / "cache")}
    code = ("import sys; from gitops_validate.cli import main; code = main(sys.argv[1:]); import yaml.reader; "
            "p = yaml.reader.Reader.NON_PRINTABLE; print(type(p).__name__, getattr(p, '_compiled', 'real'))")
    for _ in range(2):   # cold, then warm
        p = subprocess.run([sys.executable, "-c", code, "--repo", str(repo_copy)], env=env, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines()[-1] == "_CompiledOnFirstUse None", p.stdout
    # the stand-in has PyYAML's pattern (else the import compiled PyYAML's own) and finds what it finds
    assert yaml.reader.Reader.NON_PRINTABLE.pattern == yamlio._NON_PRINTABLE
    real, deferred = re.compile(yamlio._NON_PRINTABLE), yamlio._CompiledOnFirstUse(yamlio._NON_PRINTABLE)
    for text in ("plain: text\n", "tab\tand\r\n", "bell \x07", "nul \x00", "del \x7f", "nel \x85 ok", "\x9f",
                 "bom \ufeff", "\ufffe", "\uffff", "surrogate \ud800", "astral \U0001f600", "é \u2028"):
        assert [m.span() for m in deferred.finditer(text)] == [m.span() for m in real.finditer(text)], repr(text)
    with pytest.raises(yaml.reader.ReaderError, match="#x0007"):
        yaml.safe_load("a: \x07")
    assert not any(v is yamlio._deferred for c in (getattr(re, "_cache", {}), getattr(re, "_cache2", {})) for v in c.values())
