"""`lionfs demo` runs the whole loop by itself and exits 0 with its summary."""
import re
import subprocess
import sys

import pytest

from lionfs_testing import VENV_BIN

pytestmark = pytest.mark.slow


def test_demo_exits_zero_with_summary(ros_domain, tmp_path):
    exe = VENV_BIN / "lionfs"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.cli"]
    result = subprocess.run(command + ["demo", "--actions", "2", "--rate", "2", "--log-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("demo: ok:"), summary
    assert "end of stream detected: yes" in summary
    responses = int(re.search(r"; (\d+) responses, (\d+) timed at a true narration", summary).group(1))
    assert responses >= 1
    assert "truth: You " in result.stdout
