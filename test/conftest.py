"""Shared test fixtures. ROS traffic stays on this host; every test gets its own DDS domain."""
from __future__ import annotations

import importlib.util
import os

import pytest

# Before anything can start rclpy: discovery never leaves this machine.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

# Where Triton is installed but no GPU, its kernels (lionfs_ros/engine/kernels) are tested on CPU tensors through
# its interpreter, which Triton selects when it is first imported (torch._dynamo imports it early): set it first.
if importlib.util.find_spec("triton") is not None:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")

from lionfs_testing import Processes, next_domain  # noqa: E402


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    """A DDS domain of this test's own, exported for child processes."""
    domain = next_domain()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def rclpy_context(ros_domain):
    """An rclpy context on the test's domain, and an executor spinning it in a thread."""
    import threading

    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    executor = MultiThreadedExecutor(context=context)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield context, executor
    executor.shutdown()
    rclpy.try_shutdown(context=context)
    thread.join(timeout=5)
