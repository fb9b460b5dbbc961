"""The same package builds in a ROS 2 workspace with colcon, and runs from the install space."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lionfs_testing import REPO, VENV_BIN

pytestmark = pytest.mark.slow


def source_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout.split("\n")
    return [f for f in listed if f and (REPO / f).is_file()]


@pytest.mark.skipif(not (VENV_BIN / "colcon").exists(), reason="colcon is installed by `make setup`")
def test_colcon_build_and_run_from_install_space(tmp_path, ros_domain):
    package = tmp_path / "ws" / "src" / "lionfs_ros"
    for rel in source_files():
        (package / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, package / rel)
    venv = Path(sys.prefix)
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}", CMAKE_PREFIX_PATH=str(venv),
               AMENT_PREFIX_PATH=str(venv))
    build = subprocess.run(
        [str(VENV_BIN / "colcon"), "build", "--event-handlers", "console_direct-", "--cmake-args",
         f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
        cwd=tmp_path / "ws", env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    install = tmp_path / "ws" / "install"
    site = install / "lionfs_ros" / "lib" / "python3.11" / "site-packages" / "lionfs_ros"
    check = (
        "import lionfs_ros.msg, lionfs_ros.cli;"
        "from lionfs_ros.msg import AssistantMessage, GuidanceEvent;"
        "from lionfs_ros.action import SlowThink;"
        "from lionfs_ros.bringup.node_sets import config_dir;"
        "print(lionfs_ros.msg.__file__); print(lionfs_ros.cli.__file__); print(config_dir())"
    )
    script = f"source {install}/local_setup.sh && cd {tmp_path} && {sys.executable} -c '{check}'"
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    msg_file, cli_file, config = result.stdout.split()
    assert msg_file.startswith(str(site)) and cli_file.startswith(str(site))
    assert Path(config) == install / "lionfs_ros" / "share" / "lionfs_ros" / "config"

    executable = install / "lionfs_ros" / "lib" / "lionfs_ros" / "stream_monitor"
    assert os.access(executable, os.X_OK)
    run = (f"source {install}/local_setup.sh && cd {tmp_path} && "
           f"timeout -s INT 6 {sys.executable} {executable} --ros-args -p stall_timeout:=0.5")
    result = subprocess.run(["bash", "-c", run], env=env, capture_output=True, text=True, timeout=60)
    assert "watching /image_raw" in result.stdout + result.stderr, result.stdout + result.stderr
