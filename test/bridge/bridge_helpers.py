"""Helpers of the bridge tests: free ports, headless Chromium driven over the DevTools protocol, the docs example."""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from lionfs_testing import REPO

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
BROWSER_START_TIMEOUT_S = 30.0
CDP_CALL_TIMEOUT_S = 30.0
DOCS = REPO / "docs" / "BRIDGE.md"
EXAMPLE_MARKER = "<!-- example: bridge_client.py -->"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def docs_example(tmp_path: Path) -> Path:
    """The Python client example of docs/BRIDGE.md, written to a file exactly as the docs show it."""
    text = DOCS.read_text()
    after = text.split(EXAMPLE_MARKER, 1)[1]
    code = re.search(r"```python\n(.*?)```", after, re.S).group(1)
    path = tmp_path / "bridge_client.py"
    path.write_text(code)
    return path


def _browser_path() -> str:
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if not found:
        subprocess.run(["bash", str(REPO / "scripts" / "setup-test-tools.sh")], capture_output=True, text=True)
        found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if not found:
        pytest.skip("chromium is not installed and could not be installed here")
    return found


class Browser:
    """Headless Chromium with one page, driven over the Chrome DevTools Protocol."""

    def __init__(self, tmp_path: Path, size: tuple[int, int]):
        profile = tmp_path / "chromium-profile"
        self.process = subprocess.Popen(
            [_browser_path(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "chromium.log", "wb"))
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"chromium did not start; see {tmp_path / 'chromium.log'}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            targets = json.load(response)
        page = next(t for t in targets if t["type"] == "page")
        self._exit = contextlib.ExitStack()
        self.ws = self._exit.enter_context(connect(page["webSocketDebuggerUrl"], max_size=None))
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        deadline = time.monotonic() + CDP_CALL_TIMEOUT_S
        while True:
            reply = json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if reply.get("id") == call_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float):
        """Poll a JavaScript expression in the page until it is truthy; returns its value (or the last one)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()")
            if value:
                return value
            time.sleep(0.1)
        return value

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        self._exit.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
