"""The Foxglove app layout for the bridge (config/foxglove_layout.json), built with foxglove-sdk's layout types.

`python -m lionfs_ros.bridge.layout > config/foxglove_layout.json` rewrites the file;
test/bridge/test_bridge_server.py checks that the shipped file is what this builds.
"""
from __future__ import annotations

import json

import foxglove.layouts as fl

from lionfs_ros.bridge.messages import ANNOTATIONS_TOPIC, ASSISTANT_TOPIC, CAMERA_TOPIC, DIAGNOSTICS_TOPIC, LOG_TOPIC

STALE_AFTER_S = 5.0


def foxglove_layout() -> dict:
    """Camera with the assistant's overlay | the answer as it grows, the log of answers and events, diagnostics."""
    camera = fl.ImagePanel(title="camera + assistant overlay", config=fl.ImageConfig(image_mode=fl.ImageModeConfig(
        image_topic=CAMERA_TOPIC, annotations={ANNOTATIONS_TOPIC: fl.ImageAnnotationSettings(visible=True)})))
    answer = fl.RawMessagesPanel(title="assistant: latest answer",
                                 config=fl.RawMessagesConfig(topic_path=f"{ASSISTANT_TOPIC}.text"))
    log = fl.LogPanel(title="assistant log: answers and events", config=fl.LogConfig(
        topic_to_render=LOG_TOPIC, show_level=True, show_time=True, show_name=True))
    diagnostics = fl.DiagnosticsSummaryPanel(title="diagnostics", config=fl.DiagnosticsSummaryConfig(
        topic_to_render=DIAGNOSTICS_TOPIC, sort_by_level=True, seconds_until_stale=STALE_AFTER_S))
    side = fl.SplitContainer(direction="column", items=[
        fl.SplitItem(proportion=1, content=answer), fl.SplitItem(proportion=2, content=log),
        fl.SplitItem(proportion=1, content=diagnostics)])
    layout = fl.Layout(content=fl.SplitContainer(direction="row", items=[
        fl.SplitItem(proportion=2, content=camera), fl.SplitItem(proportion=1, content=side)]))
    return json.loads(layout.to_json())


if __name__ == "__main__":
    print(json.dumps(foxglove_layout(), indent=2))
