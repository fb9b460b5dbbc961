"""The README's Python API example runs as written (extracted from the README, run in a fresh interpreter)."""
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = "<!-- readme-python-example"


def readme_example() -> str:
    text = README.read_text()
    start = text.index(MARKER)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    return match.group(1)


def test_readme_python_example_runs(tmp_path):
    code = readme_example()
    assert "process_frame" in code and "load_for_inference" in code
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    decisions = [line for line in lines if "P(interval)=" in line]
    assert len(decisions) == 8 and decisions[0].startswith("0.0s speak=")
    assert any(line.startswith("  answer at 1.0s:") for line in lines), result.stdout  # the question's answer
