"""Reading YAML the user wrote: never a traceback, never unbounded work, always a line number.

PyYAML composes each document into a node graph (the C parser when available). The graph gives
line numbers for any key path, lets us refuse duplicate keys, and lets us measure how large a
document would become once aliases are expanded *before* building it (the "billion laughs"
defence). Only then are Python objects constructed.
"""

from __future__ import annotations

import gc
import re
import sys
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator


class _CompiledOnFirstUse:
    """A regular expression compiled when it is first used."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._compiled: re.Pattern | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled = re._compiler.compile(self.pattern, 0)  # past re's cache, which held this
        return getattr(self._compiled, name)


# PyYAML's yaml.reader compiles, at import, a character class spanning most of Unicode, which re's
# compiler walks one character at a time: 57 M instructions, a tenth of a warm run of this
# repository (docs/performance.md, change 24). Only its pure-Python Reader uses it (yaml.safe_load
# of a text with a character YAML does not allow), never the C loader. So, for the import, re's
# cache holds a stand-in that compiles the same pattern on first use; taken out right after. With
# another PyYAML (another pattern) or re (another cache), PyYAML just compiles it as before. The
# package's modules import PyYAML from here (`from .yamlio import yaml`), so that this comes first.
_NON_PRINTABLE = "[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]"
_deferred = _CompiledOnFirstUse(_NON_PRINTABLE)
_re_caches = [c for c in (getattr(re, "_cache", None), getattr(re, "_cache2", None)) if isinstance(c, dict)]
if "yaml.reader" not in sys.modules and _re_caches:
    _re_caches[0].setdefault((str, _NON_PRINTABLE, 0), _deferred)
try:
    import yaml
    from yaml.constructor import SafeConstructor
    from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
    from yaml.resolver import Resolver
finally:
    for _cache in _re_caches:
        if _cache.get((str, _NON_PRINTABLE, 0)) is _deferred:
            del _cache[(str, _NON_PRINTABLE, 0)]

from .record import Record  # noqa: E402

try:  # the C parser is several times faster on rendered manifests
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader with its tag resolution remembered: rendered manifests repeat the same
    plain scalars thousands of times, and resolving one is a regex search in Python (half of the
    C parser's time). The same tags as the safe loader's: without path resolvers a node's tag
    depends on its kind, text and implicit flags only, and the resolver's per-node hooks do
    nothing. The C composer calls those three for every node, so they are C callables here (a
    cache and two no-ops), not Python frames."""

    def __init__(self, stream):
        super().__init__(stream)
        if not self.yaml_path_resolvers:
            self.resolve = _cached_resolve
            self.descend_resolver = _DESCEND_NOOP
            self.ascend_resolver = _ASCEND_NOOP


# bounded: a text of distinct scalars evicts the oldest (the tags are a pure function of the arguments)
_cached_resolve = lru_cache(maxsize=16_384)(Resolver().resolve)
_DESCEND_NOOP = {}.get   # (parent, index) -> None
_ASCEND_NOOP = ().__len__   # () -> 0

#: Expanded size (nodes) above which a document is refused as an alias bomb.
MAX_EXPANDED_NODES = 200_000


class YamlProblem(Exception):
    """A problem in a YAML text, with its rule id and 1-based line."""

    def __init__(self, rule: str, message: str, line: int | None):
        super().__init__(message)
        self.rule, self.message, self.line = rule, message, line


class Document(Record):
    data: Any
    node: Node | None
    line: int  # 1-based line where the document starts in its file
    offset: int      # lines before the text this node graph was parsed from

    def __init__(self, data: Any, node: Node | None, line: int, offset: int = 0) -> None:
        self.data = data
        self.node = node
        self.line = line
        self.offset = offset

    def line_of(self, path: tuple | list) -> int | None:
        """Line of the value at ``path`` (keys and list indexes); the deepest existing parent's
        line when the path does not exist."""
        node, line = self.node, self.line
        for part in path:
            if isinstance(node, MappingNode):
                nxt = None
                for k, v in node.value:
                    if isinstance(k, ScalarNode) and k.value == str(part):
                        nxt, line = v, k.start_mark.line + 1 + self.offset
                        break
                node = nxt
            elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1 + self.offset
            else:
                node = None
            if node is None:
                break
        return line


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise YamlProblem("yaml/encoding", f"not UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start}", line) from None


def _check_mapping_keys(node: Node, first_line: int = 1) -> None:
    """Refuse duplicate keys, which YAML forbids and PyYAML silently overwrites. ``first_line``: the
    file line the text starts at (a document of a stream is parsed on its own)."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, MappingNode):
            keys: dict[str, int] = {}
            for k, v in n.value:
                if isinstance(k, ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in keys:
                        raise YamlProblem("yaml/duplicate-key",
                                          f"duplicate key {k.value!r} (first at line {keys[k.value]})",
                                          k.start_mark.line + first_line)
                    keys[k.value] = k.start_mark.line + first_line
                stack.append(k)
                stack.append(v)
        elif isinstance(n, SequenceNode):
            stack.extend(n.value)


def _expanded_size(node: Node) -> int:
    """Nodes the document would have with aliases expanded; memoized, so linear in the graph."""
    memo: dict[int, int] = {}

    def size(n: Node, depth: int) -> int:
        if depth > 1000:
            raise YamlProblem("yaml/alias-bomb", "nesting deeper than 1000 levels", n.start_mark.line + 1)
        key = id(n)
        if key in memo:
            return memo[key]
        if isinstance(n, MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in n.value)
        elif isinstance(n, SequenceNode):
            total = 1 + sum(size(v, depth + 1) for v in n.value)
        else:
            total = 1
        memo[key] = min(total, MAX_EXPANDED_NODES + 1)
        return memo[key]

    return size(node, 0)


class _GoConstructor(SafeConstructor):
    """Python objects as Kubernetes, Helm and Argo CD see the same YAML (sigs.k8s.io/yaml turns
    YAML into JSON): mapping keys are strings (``1: x`` -> ``"1"``, a date key -> its text),
    timestamps stay the text they were written as, ``!!binary`` is its decoded text. So every
    document we build is JSON-serialisable and no stage meets a date, bytes or a non-string key."""

    def construct_yaml_timestamp(self, node):  # type: ignore[override]
        return self.construct_scalar(node)

    def construct_yaml_binary(self, node):  # type: ignore[override]
        return super().construct_yaml_binary(node).decode("utf-8", "replace")

    def construct_yaml_set(self, node):  # type: ignore[override]
        data: dict = {}  # a set is a mapping to nulls, as in Go
        yield data
        data.update(self.construct_mapping(node))

    def construct_mapping(self, node, deep=False):  # type: ignore[override]
        return {_key_text(k): v for k, v in super().construct_mapping(node, deep=deep).items()}


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


_GoConstructor.add_constructor("tag:yaml.org,2002:timestamp", _GoConstructor.construct_yaml_timestamp)
_GoConstructor.add_constructor("tag:yaml.org,2002:binary", _GoConstructor.construct_yaml_binary)
_GoConstructor.add_constructor("tag:yaml.org,2002:set", _GoConstructor.construct_yaml_set)


def _construct(node: Node) -> Any:
    return _GoConstructor().construct_document(node)


class _Fallback(Exception):
    """Something the fast constructor leaves to PyYAML's (an explicit tag, a merge key, a
    duplicate key, a key that is not a scalar, a date): that text is read the full way."""


_STR, _NULL, _BOOL, _INT, _FLOAT, _TIMESTAMP, _MAP, _SEQ = (
    "tag:yaml.org,2002:" + t for t in ("str", "null", "bool", "int", "float", "timestamp", "map", "seq"))
_SCALARS = _GoConstructor()  # for int, float and bool: PyYAML's own conversions, so the values are the same


def _scalar(node: ScalarNode) -> Any:
    tag = node.tag
    if tag == _STR or tag == _TIMESTAMP:  # a timestamp stays its text (_GoConstructor)
        return node.value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return _SCALARS.construct_yaml_bool(node)
    if tag == _INT:
        return _SCALARS.construct_yaml_int(node)
    if tag == _FLOAT:
        return _SCALARS.construct_yaml_float(node)
    raise _Fallback


class _NotAString(Exception):
    pass


def _not_a_string() -> Any:
    raise _NotAString


def _fast_construct(node: Node, shared: dict | None) -> Any:
    """The same Python objects as ``_construct`` for the YAML that rendered manifests are made of
    (maps, lists, plain scalars), with the duplicate-key check of ``_check_mapping_keys`` on the
    way: one walk instead of two plus PyYAML's generic constructor. ``shared`` (when the text has
    aliases; its size is bounded first) makes an aliased node one object, as PyYAML does. A string
    (most keys and values) is taken in the loop itself: a call per scalar was most of this walk."""
    cls = node.__class__
    if cls is ScalarNode:
        return _scalar(node)
    if shared is not None and id(node) in shared:
        return shared[id(node)]
    if cls is MappingNode:
        if node.tag != _MAP:
            raise _Fallback
        if shared is None:
            # most mappings: every key a plain string, built in one comprehension (a duplicate shows
            # as a shorter dict); any other key takes the loop below
            try:
                out = {(k.value if k.tag == _STR and k.__class__ is ScalarNode else _not_a_string()):
                       (v.value if v.__class__ is ScalarNode and v.tag == _STR else _fast_construct(v, None))
                       for k, v in node.value}
            except _NotAString:
                pass
            else:
                if len(out) != len(node.value):
                    raise _Fallback
                return out
        out = {}
        if shared is not None:
            shared[id(node)] = out
        written: set[str] = set()
        constructed: set = set()
        for k, v in node.value:
            if k.__class__ is not ScalarNode:
                raise _Fallback
            text = k.value
            if k.tag == _STR:
                # a str is equal only to a str, and every str key constructed so far is in ``out``
                if text in written or text in out:
                    raise _Fallback
                key = text
            else:
                value = _scalar(k)  # a merge key ("<<") has its own tag: _Fallback
                key = _key_text(value)
                # a duplicate as written; keys equal only once constructed ("1" and 1), or only to
                # Python (1, true and 1.0, which PyYAML's constructor merges): all as PyYAML does them
                if text in written or key in out or value in constructed:
                    raise _Fallback
                constructed.add(value)
            written.add(text)
            if v.__class__ is ScalarNode and v.tag == _STR:
                out[key] = v.value
            else:
                out[key] = _fast_construct(v, shared)
        return out
    if cls is SequenceNode:
        if node.tag != _SEQ:
            raise _Fallback
        seq: list = []
        if shared is not None:
            shared[id(node)] = seq
        seq.extend([v.value if v.__class__ is ScalarNode and v.tag == _STR else _fast_construct(v, shared)
                    for v in node.value])
        return seq
    raise _Fallback


def _load_fast(text: str, first_line: int) -> list[Document] | None:
    """Every document of ``text`` read the fast way, or None when any part of it needs the full
    way (or has a problem: the full way then reports it exactly as before)."""
    may_alias = "*" in text
    loader = _Loader(text)
    docs: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if may_alias and _expanded_size(node) > MAX_EXPANDED_NODES:
                return None
            docs.append(Document(_fast_construct(node, {} if may_alias else None), node,
                                 node.start_mark.line + first_line, first_line - 1))
    except (_Fallback, yaml.YAMLError, YamlProblem, RecursionError, ValueError, TypeError, KeyError):
        return None
    finally:
        loader.dispose()
    return docs


def load_all(text: str, *, first_line: int = 1) -> Iterator[Document]:
    """Yield each document of ``text``; raise YamlProblem at the first bad one."""
    fast = _load_fast(text, first_line)
    if fast is not None:
        yield from fast
        return
    may_alias = "*" in text
    try:
        loader = _Loader(text)
        try:
            while loader.check_node():
                node = loader.get_node()
                if node is None:
                    continue
                _check_mapping_keys(node, first_line)
                # without a "*" there is no alias, and the graph is as large as the text
                if may_alias and _expanded_size(node) > MAX_EXPANDED_NODES:
                    raise YamlProblem("yaml/alias-bomb",
                                      f"aliases expand to more than {MAX_EXPANDED_NODES} nodes",
                                      node.start_mark.line + first_line)
                yield Document(_construct(node), node, node.start_mark.line + first_line, first_line - 1)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + first_line if mark is not None else None
        what = " ".join(p for p in (e.context, e.problem) if p)
        raise YamlProblem("yaml/syntax", what or str(e), line) from None
    except yaml.YAMLError as e:
        raise YamlProblem("yaml/syntax", str(e), None) from None
    except RecursionError:
        raise YamlProblem("yaml/alias-bomb", "document nests too deeply", None) from None


@contextmanager
def many_documents() -> Iterator[None]:
    """Around reading thousands of documents: their node graphs and data are millions of long-lived
    objects, which the cyclic garbage collector would otherwise walk again and again (half the time
    of reading 5,000 rendered objects). It is off while reading; what was read is then frozen out of
    its reach (none of it is garbage before the run ends)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def load_one(text: str) -> Document | None:
    docs = list(load_all(text))
    return docs[0] if docs else None


_SEPARATOR = re.compile(r"^---(?:\s.*)?$")
_SOURCE = re.compile(r"^# Source: (.+)$")


class Chunk(Record):
    text: str
    first_line: int
    source: str | None  # helm's "# Source:" comment

    def __init__(self, text: str, first_line: int, source: str | None) -> None:
        self.text = text
        self.first_line = first_line
        self.source = source


#: Line breaks of str.splitlines other than "\n": a text with none of them is split with str.find
#: (the same chunks; a Python step per line was most of the splitting)
_OTHER_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"   # each a memchr, where a regex class was slow
_SEPARATOR_BODY = re.compile(r"---(?:\s.*)?")   # _SEPARATOR, on a line without its "\n"


def split_stream(text: str) -> list[Chunk]:
    """Split a multi-document stream (helm output) into chunks, keeping helm's ``# Source:``.

    Each chunk parses on its own, so one bad document does not hide the others."""
    if not any(c in text for c in _OTHER_BREAKS):
        return _split_lf(text)
    return _split_lines(text)


def _split_lines(text: str) -> list[Chunk]:
    chunks: list[Chunk] = []
    lines = text.splitlines(keepends=True)
    start, buf, source = 1, [], None
    for i, line in enumerate(lines, 1):
        # the prefixes first: most lines are neither, and a regex per line was most of the time
        if line.startswith("---") and _SEPARATOR.match(line.rstrip("\n")):
            if buf:
                chunks.append(Chunk("".join(buf), start, source))
            start, buf, source = i + 1, [], None
            continue
        if source is None and line.startswith("# Source: "):
            m = _SOURCE.match(line.rstrip("\n"))
            if m:
                source = m.group(1).strip()
        buf.append(line)
    if buf:
        chunks.append(Chunk("".join(buf), start, source))
    return chunks


def _split_lf(text: str) -> list[Chunk]:
    """``split_stream`` of a text whose only line break is "\n": the same chunks, lines and sources."""
    chunks: list[Chunk] = []
    pos, line = 0, 1   # start of the current chunk, and its line
    for at, end in _lines_starting(text, "---"):
        if _SEPARATOR_BODY.fullmatch(text, at, end):
            if at > pos:   # a line at least between two separators
                chunks.append(_chunk(text[pos:at], line))
            line += text.count("\n", pos, at) + 1
            pos = end + 1
    if pos < len(text):
        chunks.append(_chunk(text[pos:], line))
    return chunks


def _chunk(text: str, first_line: int) -> Chunk:
    """A chunk with the first of its lines that reads ``# Source: <something>``."""
    for at, end in _lines_starting(text, "# Source: "):
        if end > at + 10:   # "(.+)$": a character at least
            return Chunk(text, first_line, text[at + 10:end].strip())
    return Chunk(text, first_line, None)


def _lines_starting(text: str, prefix: str) -> Iterator[tuple[int, int]]:
    """(start, end before its "\n") of each line of ``text`` that starts with ``prefix``."""
    needle = "\n" + prefix
    at = 0 if text.startswith(prefix) else text.find(needle)
    while at >= 0:
        if at or not text.startswith(prefix):
            at += 1   # past the "\n" that find() found
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        yield at, end
        at = text.find(needle, end)
