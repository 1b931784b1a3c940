"""yaml/: files we read must be YAML we can trust. Emitted by the loader (gitops_validate.yamlio)."""

from __future__ import annotations

from ..findings import Severity
from .base import Rule

CATEGORY = "yaml"

RULES = [
    Rule("yaml/syntax", Severity.ERROR, "YAML that does not parse",
         "A file Argo CD cannot parse fails the whole sync; we say so at the line, before merge.",
         "replicas: 2\n  image: web:1.0   # bad indentation\n", "replicas: 2\nimage: web:1.0\n"),
    Rule("yaml/duplicate-key", Severity.ERROR, "a mapping with the same key twice",
         "YAML forbids duplicate keys, but most parsers keep the last one silently: the value you "
         "read in review is not the value that ships.",
         "image:\n  tag: 1.0.0\n  tag: 1.0.1\n", "image:\n  tag: 1.0.1\n"),
    Rule("yaml/alias-bomb", Severity.ERROR,
         "anchors and aliases that expand to an enormous document (billion laughs)",
         "A few lines of aliases can expand to gigabytes and take down the repo server or a CI "
         "runner. The validator measures the expanded size before building anything.",
         "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n# ... nine more levels\n",
         "defaults: &defaults {cpu: 100m}\nweb: *defaults\n"),
    Rule("yaml/encoding", Severity.ERROR, "a file that is not UTF-8",
         "Kubernetes and Helm read UTF-8 only; other encodings turn into mojibake or parse errors "
         "far from the cause.",
         "# saved as Latin-1: caf\\xe9\n", "# saved as UTF-8: café\n"),
]
