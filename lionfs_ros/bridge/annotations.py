"""The assistant's overlay on the camera image as Foxglove ImageAnnotations.

Keyframe regions (normalized, from GuidanceEvent) become closed polylines in pixels of the
forwarded image; the latest answer becomes a text label in the top-left corner.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from foxglove.messages import (Color, ImageAnnotations, Point2, PointsAnnotation, PointsAnnotationType,
                               TextAnnotation, Timestamp)

from lionfs_ros.bridge.messages import NS_PER_S

REGION_COLOUR = Color(r=1.0, g=0.75, b=0.0, a=1.0)
TEXT_COLOUR = Color(r=1.0, g=1.0, b=1.0, a=1.0)
TEXT_BACKGROUND = Color(r=0.0, g=0.0, b=0.0, a=0.6)
LINE_THICKNESS_PX = 3.0
ANSWER_FONT_PX = 18.0
LABEL_FONT_PX = 14.0
ANSWER_ORIGIN_PX = (8.0, 26.0)  # bottom-left of the first text line


@dataclass
class Overlay:
    """What the overlay shows now: the latest answer's text and the latest response's regions."""

    width: int = 0
    height: int = 0
    text: str = ""
    regions: list[dict] = field(default_factory=list)

    def annotations(self, stamp_ns: int) -> ImageAnnotations:
        stamp = Timestamp(sec=stamp_ns // NS_PER_S, nsec=stamp_ns % NS_PER_S)
        points, texts = [], []
        for region in self.regions if self.width and self.height else ():
            x0, y0 = region["x_min"] * self.width, region["y_min"] * self.height
            x1, y1 = region["x_max"] * self.width, region["y_max"] * self.height
            points.append(PointsAnnotation(
                timestamp=stamp, type=PointsAnnotationType.LineLoop, outline_color=REGION_COLOUR,
                thickness=LINE_THICKNESS_PX, points=[Point2(x=x0, y=y0), Point2(x=x1, y=y0), Point2(x=x1, y=y1),
                                                     Point2(x=x0, y=y1)]))
            if region["label"]:
                texts.append(TextAnnotation(timestamp=stamp, position=Point2(x=x0, y=max(y0 - 4.0, LABEL_FONT_PX)),
                                            text=region["label"], font_size=LABEL_FONT_PX, text_color=REGION_COLOUR,
                                            background_color=TEXT_BACKGROUND))
        if self.text:
            texts.append(TextAnnotation(timestamp=stamp, position=Point2(x=ANSWER_ORIGIN_PX[0], y=ANSWER_ORIGIN_PX[1]),
                                        text=self.text, font_size=ANSWER_FONT_PX, text_color=TEXT_COLOUR,
                                        background_color=TEXT_BACKGROUND))
        return ImageAnnotations(timestamp=stamp, points=points, texts=texts)
