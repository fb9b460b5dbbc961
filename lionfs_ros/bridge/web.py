"""The live overlay page over HTTP: static files from lionfs_ros/resources/web/ plus where the WebSocket is.

The page (plain HTML and JavaScript, no build step) speaks the Foxglove WebSocket protocol to the
bridge's server; `/bridge.json` tells it the port and the channel topics.
"""
from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lionfs_ros.bridge.messages import (ANNOTATIONS_TOPIC, ASSISTANT_TOPIC, CAMERA_TOPIC, DIAGNOSTICS_TOPIC,
                                        GUIDANCE_TOPIC)

WEB_ROOT = Path(__file__).resolve().parents[1] / "resources" / "web"
CONFIG_PATH = "/bridge.json"


class _Handler(SimpleHTTPRequestHandler):
    """Static files of WEB_ROOT only (no directory listings), and the bridge's config."""

    config: bytes = b"{}"

    def do_GET(self) -> None:
        if self.path.split("?")[0] == CONFIG_PATH:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(self.config)))
            self.end_headers()
            self.wfile.write(self.config)
            return
        if self.path.endswith("/") and self.path != "/":
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, format, *args) -> None:  # the node's log is for the node, not for every GET
        pass


class PageServer:
    def __init__(self, host: str, port: int, ws_port: int):
        config = {"ws_port": ws_port, "topics": {"assistant": ASSISTANT_TOPIC, "guidance": GUIDANCE_TOPIC,
                                                  "diagnostics": DIAGNOSTICS_TOPIC, "camera": CAMERA_TOPIC,
                                                  "annotations": ANNOTATIONS_TOPIC}}
        handler = type("PageHandler", (_Handler,), {"config": json.dumps(config).encode()})
        self.httpd = ThreadingHTTPServer((host, port), partial(handler, directory=str(WEB_ROOT)))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="bridge-page", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
