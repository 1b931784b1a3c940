"""The values tables of the chart READMEs are generated from values.yaml and must be up to date."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "chart_readme.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_chart_readmes_are_up_to_date() -> None:
    result = run("--check")
    assert result.returncode == 0, (
        "a chart README's values table is stale; run: .venv/bin/python scripts/chart_readme.py --write\n"
        + result.stdout + result.stderr)


def test_check_reports_a_stale_table_with_a_diff(tmp_path: Path) -> None:
    chart = tmp_path / "demo"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text(
        "image:\n  # -- Image tag.\n  # @default -- the appVersion\n  tag: \"\"\n"
        "# -- Requests and limits,\n# one value.\nresources:\n  limits:\n    cpu: 1\n"
        "# -- A | pipe.\nflags: [a]\n")
    readme = chart / "README.md"
    readme.write_text("# demo\n\n<!-- values:start -->\nold\n<!-- values:end -->\ntail\n")
    stale = run("--check", str(chart))
    assert stale.returncode == 1
    assert "-old" in stale.stdout and "+| image.tag | string | the appVersion | Image tag. |" in stale.stdout
    assert run("--write", str(chart)).returncode == 0
    text = readme.read_text()
    assert "| resources | object | `{\"limits\":{\"cpu\":1}}` | Requests and limits, one value. |" in text
    assert "| flags | list | `[\"a\"]` | A \\| pipe. |" in text
    assert text.endswith("<!-- values:end -->\ntail\n")
    assert run("--check", str(chart)).returncode == 0


def test_check_fails_on_an_undocumented_key(tmp_path: Path) -> None:
    chart = tmp_path / "demo"
    chart.mkdir()
    (chart / "values.yaml").write_text("replicaCount: 1\n")
    (chart / "README.md").write_text("<!-- values:start -->\n<!-- values:end -->\n")
    result = run("--check", str(chart))
    assert result.returncode == 2 and "replicaCount" in result.stderr
