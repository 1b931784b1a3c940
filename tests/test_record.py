"""The value classes are plain classes (record.py, change 24), not dataclasses: they must behave as
the dataclasses did. Each record class is checked against a dataclass built here from its own
fields and defaults (equality, hashing, the repr, ``replace``), and the cached findings' JSON must
round-trip. The findings of whole runs are compared with older commits all over the suite
(test_startup, test_values_memo, test_resultcache, ...)."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import pickle
import pkgutil

import pytest

import gitops_validate
from gitops_validate import record, resultcache
from gitops_validate.config import Config, Limits
from gitops_validate.findings import MAX_MESSAGE_LINES, Finding, Location, ObjectRef, Problem, Severity
from gitops_validate.model import Manifest


def _record_classes() -> list[type]:
    for m in pkgutil.walk_packages(gitops_validate.__path__, "gitops_validate."):
        importlib.import_module(m.name)
    out, todo = [], [record.Record]
    while todo:
        for c in todo.pop().__subclasses__():
            todo.append(c)
            if "__annotations__" in vars(c):   # a class of fields (not Frozen, nor schema.Streamed)
                out.append(c)
    return sorted(out, key=lambda c: (c.__module__, c.__qualname__))


CLASSES = _record_classes()


def test_every_value_class_of_the_validator_is_a_record():
    """No dataclass is left in the package (importing dataclasses is a run's cost), and all 41
    former ones are records whose __init__ takes their fields, in order, by name."""
    assert len(CLASSES) >= 41, [c.__qualname__ for c in CLASSES]
    for c in CLASSES:
        params = list(inspect.signature(c.__init__).parameters.values())[1:]
        assert tuple(p.name for p in params) == c._fields, c
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params), c
    for m in pkgutil.walk_packages(gitops_validate.__path__, "gitops_validate."):
        assert not any(dataclasses.is_dataclass(v) for v in vars(importlib.import_module(m.name)).values()), m.name


def _twin(cls: type) -> type:
    """A dataclass with ``cls``'s name, fields and defaults: what ``cls`` was."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    fields = []
    for p in params:
        hidden = p.name in cls._not_compared
        f = dataclasses.field(compare=not hidden, repr=not hidden) if p.default is p.empty else \
            dataclasses.field(default=p.default, compare=not hidden, repr=not hidden)
        fields.append((p.name, object, f))
    twin = dataclasses.make_dataclass(cls.__name__, fields, frozen=issubclass(cls, record.Frozen))
    twin.__qualname__ = cls.__qualname__
    return twin


def _values(cls: type, seed: int) -> dict:
    """Field values for ``cls``: hashable ones, distinct per field and seed."""
    return {f: (f, seed) for f in cls._fields}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__.rsplit('.', 1)[-1]}.{c.__qualname__}")
def test_a_record_compares_hashes_and_shows_as_its_dataclass_did(cls):
    twin = _twin(cls)
    a, b = cls(**_values(cls, 1)), cls(**_values(cls, 1))
    ta, tb = twin(**_values(cls, 1)), twin(**_values(cls, 1))
    if cls is Finding:   # its message is a str (anything else is made one, bounded)
        a, b = (cls(**{**_values(cls, 1), "message": "m"}) for _ in "ab")
        ta = twin(**{**_values(cls, 1), "message": "m"})
    assert repr(a) == repr(ta)
    assert (a == b) is True and (a != b) is False and a is not b
    assert a != ta and (a == 1) is False                 # another class is never equal
    for f in cls._fields:
        other = record.replace(a, **{f: ("changed", f)})
        assert getattr(other, f) == (str(("changed", f)) if (cls, f) == (Finding, "message") else ("changed", f))
        assert (other == a) is (f in cls._not_compared), f
        twin_other = dataclasses.replace(ta, **{f: ("changed", f)}) if cls is not Finding or f != "message" else None
        if twin_other is not None:
            assert (twin_other == ta) is (other == a)
    if issubclass(cls, record.Frozen):
        assert hash(a) == hash(b) and {a, b} == {a}
        with pytest.raises(AttributeError):
            setattr(a, cls._fields[0], 1)
        with pytest.raises(AttributeError):
            delattr(a, cls._fields[0])
        assert copy.copy(a) == a and copy.deepcopy(a) == a and pickle.loads(pickle.dumps(a)) == a
    else:
        with pytest.raises(TypeError):
            hash(a)
        setattr(a, cls._fields[0], "set")
        assert getattr(a, cls._fields[0]) == "set"
    with pytest.raises(TypeError):
        record.replace(a, no_such_field=1)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__.rsplit('.', 1)[-1]}.{c.__qualname__}")
def test_a_records_defaults_are_its_dataclasses_and_mutable_ones_are_not_shared(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    required = {p.name: (p.name,) for p in params if p.default is p.empty}
    a, b = cls(**required), cls(**required)
    for p in params:
        if p.default is p.empty:
            continue
        value = getattr(a, p.name)
        if isinstance(value, (list, dict, set)):         # default_factory: a new one each time
            assert p.default is None and value == type(value)() and value is not getattr(b, p.name), p.name
        elif isinstance(value, Limits):
            assert value == Limits() and p.default is None
        else:
            assert value == p.default or value is p.default, p.name


def test_finding_manifest_and_the_cache_encoding_round_trip():
    ref = ObjectRef("apps/v1", "Deployment", "ns", "web")
    related = (Location("apps/x/templates/d.yaml", 40, "rendered by"), Location("v.yaml", None, "read by"))
    f = Finding("security/run-as-non-root", Severity.ERROR, "runs as root", "v.yaml", 3, ref, "web", related)
    assert f == Finding(**{n: getattr(f, n) for n in f._fields}) and hash(f) == hash(copy.deepcopy(f))
    assert repr(f) == ("Finding(rule='security/run-as-non-root', severity=<Severity.ERROR: 'error'>, "
                       "message='runs as root', file='v.yaml', line=3, object=ObjectRef(apiVersion='apps/v1', "
                       "kind='Deployment', namespace='ns', name='web'), app='web', related=(Location("
                       "file='apps/x/templates/d.yaml', line=40, label='rendered by'), Location(file='v.yaml', "
                       "line=None, label='read by')))")
    encoded = resultcache.encode([f, Finding("x/y", Severity.WARNING, "m")])
    assert encoded[0] == {"@": "Finding", "rule": "security/run-as-non-root", "severity": {"@enum": "Severity", "value": "error"},
                          "message": "runs as root", "file": "v.yaml", "line": 3,
                          "object": {"@": "ObjectRef", "apiVersion": "apps/v1", "kind": "Deployment", "namespace": "ns", "name": "web"},
                          "app": "web", "related": {"@tuple": [
                              {"@": "Location", "file": "apps/x/templates/d.yaml", "line": 40, "label": "rendered by"},
                              {"@": "Location", "file": "v.yaml", "line": None, "label": "read by"}]}}
    assert resultcache.decode_findings(encoded) == [f, Finding("x/y", Severity.WARNING, "m")]
    entry = resultcache.Entry([f], True, [], [resultcache.Object({"kind": "Pod"}, "t.yaml", None, [f], ["refs/x"], [["Secret", "ns", "s", False]])])
    assert resultcache.Entry.load(entry.dump()) == entry
    for name in ("Manifest", "Severity", "Record", "Enum"):   # a record of findings.py, or nothing
        with pytest.raises(ValueError):
            resultcache.decode([{"@": name, "message": "m"}])
    # a bounded message, through __init__ and replace alike
    long = "\n".join(map(str, range(100)))
    assert Finding("a/b", Severity.ERROR, long).message.count("\n") == MAX_MESSAGE_LINES
    assert record.replace(f, message=long).message == Finding("a/b", Severity.ERROR, long).message
    # a Manifest: its kept JSON text is a cache of doc, neither compared nor shown
    m = Manifest({"kind": "Pod"}, "f.yaml", 1, json_text='{"kind":"Pod"}')
    assert m == Manifest({"kind": "Pod"}, "f.yaml", 1) and "json_text" not in repr(m)
    assert repr(m) == "Manifest(doc={'kind': 'Pod'}, file='f.yaml', line=1, app=None, cluster=None, yaml=None, values=None, hints=())"
    assert record.replace(m, app="a").json_text == '{"kind":"Pod"}'
    assert not hasattr(m, "__dict__") and not hasattr(f, "__dict__")   # slots: made by the thousand
    assert Problem("m") == Problem("m", (), None, (), (), "found at", None)


def test_the_config_keys_the_cache_as_the_dataclasses_did():
    """``resultcache.canonical`` of the config (part of every cache key) is unchanged."""
    assert resultcache.canonical(Config()) == {
        "repo_urls": [], "kubernetes_version": Config().kubernetes_version, "schema_dir": None, "allowed_registries": [],
        "severities": [], "exclude": [], "rule_exclude": [], "clusters": [],
        "limits": {"max_app_depth": 10, "max_applications": 1000, "deadline": 600, "render_timeout": 90, "cache_max_mb": 100},
        "source": None}
