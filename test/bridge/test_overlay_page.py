"""A real node set (lionfs_node with the bundled demo model + bridge, separate processes) fed a synthetic
episode; headless Chromium opens the overlay page and the docs' client example subscribes: both
receive the assistant's final answer, and the page draws a keyframe region. Then the bridge
alone restarts and the page reconnects while lionfs_node keeps running.

The bundled demo model's slow path is off (it emits no regions), so the region comes from a
GuidanceEvent that this test publishes itself with a real rclpy publisher, stamped with the
answer's frame, as lionfs_node's RESPONSE_COMPLETED would carry it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest
import yaml

from bridge_helpers import Browser, docs_example, free_port, wait_for_port
from lionfs_testing import node_command, wait_until

pytestmark = pytest.mark.slow

WINDOW = (1280, 800)
REGION = dict(x_min=0.25, y_min=0.30, x_max=0.60, y_max=0.75)
REGION_RGB = (0xFF, 0xBF, 0x00)  # --region in overlay.css
COLOUR_TOLERANCE = 12
BORDER_PX = 4  # .region border width in overlay.css
MIN_BORDER_COVERAGE = 0.9
STARTUP_TIMEOUT_S = 90.0
ANSWER_TIMEOUT_S = 90.0
PAGE_TIMEOUT_S = 20.0


def _params_file(tmp_path, ws_port: int, http_port: int):
    from lionfs_ros.bringup.node_sets import get_node_set

    params = yaml.safe_load(get_node_set("lionfs_ar").params_file.read_text())
    params["/**/bridge"]["ros__parameters"].update(port=ws_port, http_port=http_port, camera_rate=4.0)
    path = tmp_path / "lionfs_ar.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _start_node(processes, executable: str, params, log_name: str):
    return processes.start(node_command(executable, "-r", f"__node:={executable}", "--params-file", str(params),
                                        "-r", "image_raw:=/camera/image_raw"), log_name)


def _border_coverage(png, box: tuple[float, float, float, float]) -> list[float]:
    """Share of region-coloured pixels along the middle of each of the box's four borders (left, top, right, bottom)."""
    image = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB).astype(np.int16)
    mask = (np.abs(image - np.array(REGION_RGB, np.int16)) <= COLOUR_TOLERANCE).all(axis=2)
    x0, y0, x1, y1 = box
    inset = BORDER_PX / 2
    xs, ys = slice(round(x0 + BORDER_PX), round(x1 - BORDER_PX)), slice(round(y0 + BORDER_PX), round(y1 - BORDER_PX))
    lines = [mask[ys, round(x0 + inset)], mask[round(y0 + inset), xs], mask[ys, round(x1 - inset)],
             mask[round(y1 - inset), xs]]
    return [float(line.mean()) for line in lines]


def test_page_and_client_receive_answer_and_region(processes, rclpy_context, tmp_path):
    from lionfs_ros.commands.demo_episode import demo_episode
    from lionfs_ros.msg import GuidanceEvent, RegionOfInterest2D
    from lionfs_ros.nodes.camera_source import CameraSource
    from lionfs_ros.nodes.listener import Listener

    context, executor = rclpy_context
    ws_port, http_port = free_port(), free_port()
    params = _params_file(tmp_path, ws_port, http_port)
    assistant = _start_node(processes, "lionfs_node", params, "lionfs_node")
    bridge = _start_node(processes, "bridge", params, "bridge")
    camera = CameraSource("/camera/image_raw", context=context)
    listener = Listener(out=open(tmp_path / "listener.txt", "w"), context=context)
    guidance = listener.create_publisher(GuidanceEvent, "guidance", 10)
    for node in (camera, listener):
        executor.add_node(node)
    assert wait_for_port(http_port, STARTUP_TIMEOUT_S), processes.log(bridge)
    assert wait_until(lambda: camera.publisher.get_subscription_count() >= 2, STARTUP_TIMEOUT_S), \
        processes.log(assistant)[-3000:]

    example = subprocess.Popen([sys.executable, str(docs_example(tmp_path)), f"ws://127.0.0.1:{ws_port}", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    browser = Browser(tmp_path, WINDOW)
    player = threading.Thread(target=camera.play, args=(demo_episode(seed=7, actions=2).frames(),),
                              kwargs={"rate": 2.0}, daemon=True)
    try:
        browser.open(f"http://127.0.0.1:{http_port}/")
        assert browser.wait_for("document.getElementById('link').textContent === 'connected'", PAGE_TIMEOUT_S)
        assert example.stdout.readline().strip() == "subscribed to /assistant"

        player.start()
        final = wait_until(lambda: next((m for m in listener.messages if m.is_final and m.text), None),
                           ANSWER_TIMEOUT_S)
        assert final is not None, processes.log(assistant)[-3000:]
        player.join(timeout=ANSWER_TIMEOUT_S)  # the stream ends: no later response can clear the region below
        assert wait_until(lambda: listener.events_of(GuidanceEvent.STREAM_STALLED), ANSWER_TIMEOUT_S)
        guidance.publish(GuidanceEvent(
            header=final.header, stream_id=final.stream_id, event_type=GuidanceEvent.RESPONSE_COMPLETED,
            turn_index=final.turn_index, summary="test region",
            regions=[RegionOfInterest2D(**REGION, label="hand", score=0.9)]))

        # The protocol client (the docs' example, as written) prints the final answer and exits.
        out, _ = example.communicate(timeout=PAGE_TIMEOUT_S)
        assert example.returncode == 0, out
        assert f"turn {final.turn_index} final: {final.text}" in out, out

        # The page: the answer, its history, the camera and the drawn region.
        in_history = (f"[...document.querySelectorAll('#history li')]"
                      f".some((li) => li.textContent === {json.dumps(final.text)})")
        assert browser.wait_for(in_history, PAGE_TIMEOUT_S), browser.evaluate("document.body.innerText")
        assert browser.wait_for("document.querySelectorAll('#regions .region').length === 1", PAGE_TIMEOUT_S)
        assert browser.wait_for("document.getElementById('camera').naturalWidth > 0", PAGE_TIMEOUT_S)
        for pill in ("node-health", "bridge-health", "camera-health"):  # stream health from /diagnostics and the page
            assert browser.wait_for(f"document.getElementById('{pill}').dataset.level !== 'stale'", PAGE_TIMEOUT_S)
        dom = browser.evaluate("document.documentElement.outerHTML")
        (tmp_path / "page.html").write_text(dom)
        assert final.text in dom and 'data-label="hand"' in dom
        stage = browser.evaluate("(() => { const r = document.getElementById('stage').getBoundingClientRect();"
                                 " return [r.left, r.top, r.width, r.height]; })()")
        left, top, width, height = stage
        box = (left + REGION["x_min"] * width, top + REGION["y_min"] * height,
               left + REGION["x_max"] * width, top + REGION["y_max"] * height)
        coverage = _border_coverage(browser.screenshot(tmp_path / "page.png"), box)
        assert min(coverage) >= MIN_BORDER_COVERAGE, (coverage, box)

        # The bridge restarts on its own; lionfs_node never notices, the page reconnects.
        bridge.send_signal(2)
        assert bridge.wait(timeout=15) == 0, processes.log(bridge)
        assert browser.wait_for("document.getElementById('link').dataset.level === 'error'", PAGE_TIMEOUT_S)
        bridge = _start_node(processes, "bridge", params, "bridge_restarted")
        assert browser.wait_for("document.getElementById('link').textContent === 'connected'", STARTUP_TIMEOUT_S)
        assert assistant.poll() is None, "lionfs_node kept running"
    finally:
        browser.close()
        player.join(timeout=ANSWER_TIMEOUT_S)
        if example.poll() is None:
            example.kill()


def test_bringup_starts_the_ar_set_with_the_page(processes, ros_domain, tmp_path):
    """`lionfs bringup --set lionfs_ar`: lionfs_node and the bridge come up from one params file; SIGINT stops both."""
    import urllib.request

    from lionfs_testing import VENV_BIN

    ws_port, http_port = free_port(), free_port()
    exe = VENV_BIN / "lionfs"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "lionfs_ros.cli"]
    bringup = processes.start(command + ["bringup", "--set", "lionfs_ar", "--params",
                                         str(_params_file(tmp_path, ws_port, http_port)),
                                         "--log-dir", str(tmp_path / "logs")], "bringup")
    assert wait_for_port(http_port, STARTUP_TIMEOUT_S), processes.log(bringup)
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/") as page:
        assert "lionfs_ros live overlay" in page.read().decode()
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/bridge.json") as config:
        assert json.load(config)["ws_port"] == ws_port
    node_log = tmp_path / "logs" / "lionfs_node.log"
    assert wait_until(lambda: node_log.exists() and "active: watching" in node_log.read_text(), STARTUP_TIMEOUT_S), \
        processes.log(bringup)
    bringup.send_signal(2)
    assert bringup.wait(timeout=30) == 0, processes.log(bringup)
