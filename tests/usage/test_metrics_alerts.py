"""docs/prometheus/alerts.yml loads in Prometheus and each alert fires on the traffic it is for.

promtool comes with Debian's prometheus package (scripts/bootstrap.sh
installs it); on CI a missing promtool fails the run instead of skipping.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from e2e.harness import require

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    require(tool is not None, "promtool is not installed (Debian package prometheus)")
    return subprocess.run(
        [tool, *args],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=120,  # type: ignore[list-item]
    )


def test_the_alert_rules_are_valid() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    tested = promtool("test", "rules", "alerts.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
