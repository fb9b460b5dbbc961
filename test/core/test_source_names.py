"""Every name the package, its scripts and its tests use exists where it is used (pyflakes' undefined-name checks).

Some code runs only on a GPU (FP8, the Triton kernels' engine paths, the GPU rounds' scripts and their Python
heredocs): a misspelt or missing name there passes every CPU test and fails only in a device call. This finds
them on the CPU: `.py` files under lionfs_ros/, scripts/ and test/, and every ``<<'PY'`` heredoc of scripts/*.sh."""
import ast
import re
from pathlib import Path

from pyflakes import checker, messages

ROOT = Path(__file__).resolve().parents[2]
UNDEFINED = (messages.UndefinedName, messages.UndefinedLocal, messages.UndefinedExport)
HEREDOC = re.compile(r"<<\s*'PY'\s*(?:[|>&].*)?$")  # a quoted heredoc: the shell leaves its text alone


def python_sources():
    """(label, first line, source) of every Python text to check."""
    for folder in ("lionfs_ros", "scripts", "test"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield str(path.relative_to(ROOT)), 1, path.read_text()
    for path in sorted((ROOT / "scripts").glob("*.sh")):
        lines = path.read_text().splitlines()
        start = None
        for number, line in enumerate(lines, 1):
            if start is None and HEREDOC.search(line):
                start = number + 1
            elif start is not None and line == "PY":
                yield str(path.relative_to(ROOT)), start, "\n".join(lines[start - 1:number - 1]) + "\n"
                start = None


def undefined(label: str, first: int, source: str) -> list[str]:
    tree = ast.parse(source, filename=label)
    return [f"{label}:{first + msg.lineno - 1}: {msg.message % msg.message_args}"
            for msg in checker.Checker(tree, filename=label).messages if isinstance(msg, UNDEFINED)]


def test_the_checker_finds_a_name_used_only_on_the_gpu():
    source = "import torch\n\ndef problem(device):\n    if device.type != 'cuda':\n        return 'no GPU'\n" \
             "    if dtype == torch.float32:\n        return 'float32'\n"
    assert undefined("probe.py", 10, source) == ["probe.py:15: undefined name 'dtype'"]


def test_no_undefined_names():
    sources = list(python_sources())
    assert any(label.endswith(".sh") for label, _, _ in sources), "no heredoc found: the pattern is stale"
    found = [line for label, first, source in sources for line in undefined(label, first, source)]
    assert not found, "\n".join(found)
