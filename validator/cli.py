"""gitops-validate: the command line. Parses arguments, runs the pipeline, prints a report.

Exit codes: 0 no error findings (warnings allowed), 1 at least one error finding,
2 the validator could not run (bad usage, unreadable config, a missing tool or schema).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import __version__, config as config_mod, pipeline, report, suppress
from .findings import Severity
from .rules import REGISTRY

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT_RUN = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gitops-validate",
        description="Render Argo CD apps the way Argo CD does, schema-check them offline with kubeconform, "
                    "and apply policy rules. With no PATH, validate the whole repository; with PATHs "
                    "(as pre-commit passes them), only the apps those files affect.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="changed files, or manifests with --manifests ('-' for stdin)")
    p.add_argument("--repo", type=Path, help="repository root (default: the git top level of the working directory)")
    p.add_argument("--manifests", action="store_true", help="PATHs are rendered Kubernetes manifests: no Helm, no Argo CD")
    p.add_argument("--format", choices=sorted(report.FORMATS), default="text")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the report to FILE (the summary line still goes to stderr)")
    p.add_argument("--rules-url", metavar="URL", help="SARIF helpUri base: where docs/rules.md is published "
                   "(default: the package's Documentation URL)")
    p.add_argument("--config", type=Path, help=f"config file (default: {config_mod.DEFAULT_NAME} at the repo root)")
    p.add_argument("--kubernetes-version", metavar="X.Y", help="override the cluster's Kubernetes version")
    p.add_argument("--schema-dir", type=Path, help="offline schemas (default: .tools/schemas at the repo root)")
    p.add_argument("--baseline", type=Path, metavar="FILE", help="do not report the findings recorded in FILE (block only new ones)")
    p.add_argument("--write-baseline", type=Path, metavar="FILE", help="record the current findings in FILE and exit 0")
    p.add_argument("--no-cache", action="store_true", help="render every app, ignoring the render cache")
    p.add_argument("-v", "--verbose", action="store_true", help="say how many apps were rendered and read from cache")
    p.add_argument("--list-rules", action="store_true", help="list the rules with their default severity and exit")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _git_toplevel(start: Path) -> Path | None:
    try:
        out = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _relative(paths: list[str], repo: Path) -> list[str]:
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
    if argv[:1] in (["doctor"], ["tools"]):  # subcommands; a repo file named so is passed as ./doctor
        from . import tools
        return tools.main(argv)
    args = _parser().parse_args(argv)
    if args.list_rules:
        for rule in REGISTRY.values():
            print(f"{rule.id:<38} {rule.severity.value:<8} {rule.summary}")
        return EXIT_OK
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
    try:
        cfg = config_mod.load(cfg_path, set(REGISTRY))
    except config_mod.ConfigError as e:
        print(f"gitops-validate: bad config: {e}", file=err)
        return EXIT_CANNOT_RUN
    if args.kubernetes_version:
        try:
            from .schemastore import kubernetes_minor
            kubernetes_minor(args.kubernetes_version)
        except ValueError as e:
            print(f"gitops-validate: --kubernetes-version: {e}", file=err)
            return EXIT_CANNOT_RUN
    cache_dir = None if args.no_cache else Path(os.environ.get("GITOPS_VALIDATE_CACHE", repo / ".cache" / "gitops-validate"))
    opts = pipeline.Options(
        repo=repo, config=cfg,
        paths=args.paths if args.manifests else _relative(args.paths, repo),
        manifests=args.manifests, kubernetes_version=args.kubernetes_version,
        schema_dir=args.schema_dir, cache_dir=cache_dir)
    try:
        result = pipeline.run(opts)
    except pipeline.CannotRun as e:
        print(f"gitops-validate: {e}", file=err)
        return EXIT_CANNOT_RUN
    except RuntimeError as e:  # a tool misbehaved (timeout, garbage output)
        print(f"gitops-validate: {e}", file=err)
        return EXIT_CANNOT_RUN
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
    else:
        colour = args.format == "text" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
        report.FORMATS[args.format](result.findings, summary, sys.stdout, colour, **extra)
    if args.verbose:
        print(f"gitops-validate: {result.helm_runs} helm render(s), {result.cache_hits} from cache", file=err)
    return EXIT_FINDINGS if any(f.severity is Severity.ERROR for f in result.findings) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
