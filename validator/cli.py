"""gitops-validate: the command line. Parses arguments, runs the pipeline, prints a report.

Exit codes: 0 no error findings (warnings allowed), 1 at least one error finding,
2 the validator could not run (bad usage, unreadable config, a missing tool or schema).
"""

from __future__ import annotations

import argparse
import os
import sys

# Only argparse here: `--help` and `--version` must start fast (tests/test_performance.py). Everything
# else (the pipeline, yaml, jsonschema, the rules, subprocess and pathlib) is
# imported after the arguments parsed.
from . import CONFIG_NAME, __version__

#: report.FORMATS' names, spelled out so that `--help` need not import the report (a test checks they agree).
FORMATS = ("github", "json", "junit", "sarif", "text")

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT_RUN = 0, 1, 2
#: What stderr says when the validator itself failed (the tests look for it: it must never happen).
INTERNAL_ERROR = "internal error"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gitops-validate",
        description="Render Argo CD apps the way Argo CD does, schema-check them offline with kubeconform, "
                    "and apply policy rules. With no PATH, validate the whole repository; with PATHs "
                    "(as pre-commit passes them), only the apps those files affect.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="changed files, or manifests with --manifests ('-' for stdin)")
    p.add_argument("--repo", type=_path, help="repository root (default: the git top level of the working directory)")
    p.add_argument("--manifests", action="store_true", help="PATHs are rendered Kubernetes manifests: no Helm, no Argo CD")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("--output", "-o", type=_path, metavar="FILE", help="write the report to FILE (the summary line still goes to stderr)")
    p.add_argument("--rules-url", metavar="URL", help="SARIF helpUri base: where docs/rules.md is published "
                   "(default: the package's Documentation URL)")
    p.add_argument("--config", type=_path, help=f"config file (default: {CONFIG_NAME} at the repo root)")
    p.add_argument("--kubernetes-version", metavar="X.Y", help="override the cluster's Kubernetes version")
    p.add_argument("--schema-dir", type=_path, help="offline schemas (default: .tools/schemas at the repo root)")
    p.add_argument("--baseline", type=_path, metavar="FILE", help="do not report the findings recorded in FILE (block only new ones)")
    p.add_argument("--write-baseline", type=_path, metavar="FILE", help="record the current findings in FILE and exit 0")
    p.add_argument("--no-cache", action="store_true", help="render every app, ignoring the render cache "
                   "(default location: $GITOPS_VALIDATE_CACHE, else $XDG_CACHE_HOME/gitops-validate/<repo hash>)")
    p.add_argument("--deadline", type=_seconds, metavar="SECONDS",
                   help="stop with exit 2 when the run takes longer (default: limits.deadlineSeconds, 600)")
    p.add_argument("--render-timeout", type=_seconds, metavar="SECONDS",
                   help="stop with exit 2 when one helm template takes longer (default: limits.renderTimeoutSeconds, 90)")
    p.add_argument("--capacity", action="store_true",
                   help="also print each cluster's capacity budget: who requests what, against cluster.yaml's capacity "
                        "(text: a table before the findings; json: a \"capacity\" key)")
    p.add_argument("-v", "--verbose", action="store_true", help="say how many apps were rendered and read from cache")
    p.add_argument("--list-rules", action="store_true", help="list the rules with their default severity and exit")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _path(text: str) -> Path:
    from pathlib import Path  # only once an argument names a path: `--help` imports no pathlib
    return Path(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def _git_toplevel(start: Path) -> Path | None:
    from pathlib import Path
    from .discover import git
    out = git(start, "rev-parse", "--show-toplevel")
    return Path(os.fsdecode(out.strip())) if out and out.strip() else None


def _relative(paths: list[str], repo: Path) -> list[str]:
    from pathlib import Path
    out = []
    for p in paths:
        ap = Path(p).absolute()
        try:
            out.append(str(ap.relative_to(repo.resolve())) if ap.is_absolute() else p)
        except ValueError:
            try:
                out.append(str(ap.resolve().relative_to(repo.resolve())))
            except ValueError:
                out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # subcommands; a repo file named so is passed as ./doctor. --help, --version and bad usage exit
    # in parse_args, before the imports below.
    args = None if argv[:1] in (["doctor"], ["tools"]) else _parser().parse_args(argv)
    import signal
    from . import report, tools
    tools.install_signal_handlers()
    try:
        return _main(argv, args)
    except tools.Interrupted as e:  # helm and kubeconform are stopped, temporary files removed
        print(f"gitops-validate: interrupted by {signal.Signals(e.signum).name}", file=sys.stderr)
        return e.exit_code
    except tools.CannotRun as e:  # also a tool that failed (tools.ToolFailed)
        print(f"gitops-validate: {e}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except Exception as e:  # noqa: BLE001 - fail closed in one line, never a traceback and never a pass
        print(f"gitops-validate: {INTERNAL_ERROR}: {type(e).__name__}: {report.printable(str(e))[:500]} "
              "(a bug in the validator: please report it with the input)", file=sys.stderr)
        return EXIT_CANNOT_RUN
    finally:
        if _renders_ahead(args):
            from .helmrenderer import close_all
            close_all()   # the renderer started ahead ends with the run, used or not


def _renders_ahead(args: argparse.Namespace | None) -> bool:
    """A path-scoped repository run (what pre-commit runs) most likely renders the app its change
    touches: helm-renderer then starts before the pipeline's imports (``helmrenderer.start_early``),
    so that its start-up overlaps them. Another run starts it only when it has a render to do."""
    return args is not None and bool(args.paths) and not args.manifests and not args.list_rules


def _main(argv: list[str], args: argparse.Namespace | None) -> int:
    if args is None:
        from . import toolchain
        return toolchain.main(argv)
    from .rules import REGISTRY
    if args.list_rules:
        for rule in REGISTRY.values():
            print(f"{rule.id:<38} {rule.severity.value:<8} {rule.summary}")
        return EXIT_OK
    if _renders_ahead(args):
        from . import helmrenderer, toolchain
        helm = toolchain.locate("helm")
        if helm:
            helmrenderer.start_early(helm)
    from pathlib import Path
    from . import config as config_mod, confine, pipeline, rendercache, report, suppress
    from .findings import Severity
    from .record import replace
    from .rules.capacity import format_table
    from .schemastore import normalize_version
    err = sys.stderr
    repo = args.repo or _git_toplevel(Path.cwd()) or Path.cwd()
    if not repo.is_dir():
        print(f"gitops-validate: --repo {repo} is not a directory", file=err)
        return EXIT_CANNOT_RUN
    repo = repo.resolve()
    cfg_path = args.config or repo / config_mod.DEFAULT_NAME
    if args.config and not args.config.is_file():
        print(f"gitops-validate: config {args.config} does not exist", file=err)
        return EXIT_CANNOT_RUN
    if args.config is None and confine.escapes(repo, config_mod.DEFAULT_NAME):
        print(f"gitops-validate: bad config: {config_mod.DEFAULT_NAME} is a symlink that leaves the repository; "
              "not read (make it a file in the repo, or pass --config)", file=err)
        return EXIT_CANNOT_RUN
    try:
        cfg = config_mod.load(cfg_path, set(REGISTRY), None if args.no_cache else rendercache.default_dir(repo))
    except config_mod.ConfigError as e:
        print(f"gitops-validate: bad config: {e}", file=err)
        return EXIT_CANNOT_RUN
    if args.kubernetes_version:
        try:
            args.kubernetes_version = normalize_version(args.kubernetes_version)
        except ValueError as e:
            print(f"gitops-validate: --kubernetes-version: {e}", file=err)
            return EXIT_CANNOT_RUN
    if args.deadline or args.render_timeout:
        cfg.limits = replace(cfg.limits, deadline=args.deadline or cfg.limits.deadline,
                             render_timeout=args.render_timeout or cfg.limits.render_timeout)
    cache_dir = None if args.no_cache else rendercache.default_dir(repo)
    opts = pipeline.Options(
        repo=repo, config=cfg,
        paths=args.paths if args.manifests else _relative(args.paths, repo),
        manifests=args.manifests, kubernetes_version=args.kubernetes_version,
        schema_dir=args.schema_dir, cache_dir=cache_dir)
    result = pipeline.run(opts)
    if args.write_baseline:
        try:
            suppress.write_baseline(args.write_baseline, result.findings)
        except OSError as e:
            print(f"gitops-validate: --write-baseline {args.write_baseline}: {e.strerror}", file=err)
            return EXIT_CANNOT_RUN
        print(f"gitops-validate: recorded {len(result.findings)} finding(s) in {args.write_baseline}", file=err)
        return EXIT_OK
    if args.baseline:
        try:
            result.findings, hidden, gone = suppress.apply_baseline(result.findings, suppress.read_baseline(args.baseline))
        except suppress.BaselineError as e:
            print(f"gitops-validate: --baseline {e}", file=err)
            return EXIT_CANNOT_RUN
        print(f"gitops-validate: {hidden} known finding(s) not reported (baseline {args.baseline})"
              + (f"; {gone} baseline entr{'y no longer occurs' if gone == 1 else 'ies no longer occur'}: "
                 "refresh it with --write-baseline" if gone else ""), file=err)
    summary = report.Summary.of(result.findings, result.apps, result.objects, result.seconds)
    extra = {"rules_url": args.rules_url} if args.format == "sarif" else {}
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as out:
                report.FORMATS[args.format](result.findings, summary, out, False, **extra)
        except OSError as e:
            print(f"gitops-validate: --output {args.output}: {e.strerror}", file=err)
            return EXIT_CANNOT_RUN
        print(summary.line(), file=err)
    elif args.capacity and args.format == "json":
        report.as_json(result.findings, summary, sys.stdout, extra={"capacity": [b.as_dict() for b in result.budgets]})
    else:
        if args.capacity:  # text: the tables first; other formats keep stdout machine-readable
            for b in result.budgets:
                print(format_table(b), file=sys.stdout if args.format == "text" else err)
        colour = args.format == "text" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        report.FORMATS[args.format](result.findings, summary, sys.stdout, colour, **extra)
    if args.verbose:
        print(f"gitops-validate: {result.helm_runs} helm render(s), {result.cache_hits} from cache", file=err)
        from .helmrenderer import note  # only here: the CLI starts without it
        if result.helm_runs and note():
            print(f"gitops-validate: rendered by {note()}", file=err)
    return EXIT_FINDINGS if any(f.severity is Severity.ERROR for f in result.findings) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
