"""Engine results -> lionfs_ros messages. Pure conversions, no node state."""
from __future__ import annotations

from builtin_interfaces.msg import Duration
from std_msgs.msg import Header

from lionfs_ros.msg import AssistantMessage, GuidanceEvent, RegionOfInterest2D

NS_PER_S = 1_000_000_000


def duration(seconds: float | None) -> Duration:
    nanoseconds = max(0, int(round((seconds or 0.0) * NS_PER_S)))
    return Duration(sec=nanoseconds // NS_PER_S, nanosec=nanoseconds % NS_PER_S)


def header_or_now(meta, clock) -> Header:
    """The triggering frame's header (the engine passes it through as `meta`), else now."""
    if isinstance(meta, Header):
        return meta
    return Header(stamp=clock.now().to_msg())


def regions_msg(regions) -> list[RegionOfInterest2D]:
    """(x0, y0, x1, y1, label, score) tuples, normalized to [0, 1] -> messages."""
    out = []
    for x0, y0, x1, y1, label, score in regions or ():
        out.append(RegionOfInterest2D(x_min=float(x0), y_min=float(y0), x_max=float(x1), y_max=float(y1),
                                      label=str(label), score=float(score)))
    return out


def assistant_message(update, stream_id: str, sequence: int, clock) -> AssistantMessage:
    """One streamed update (partial or final) of a response."""
    role = AssistantMessage.ROLE_QUERY_ANSWER if update.query else AssistantMessage.ROLE_NARRATION
    return AssistantMessage(
        header=header_or_now(update.trigger_meta, clock), stream_id=stream_id, turn_index=update.turn_index,
        role=role, text=update.text, is_final=update.is_final, sequence=sequence,
        trigger_score=float(update.trigger_score), query=update.query or "", query_id=update.query_id or "",
        decision_latency=duration(update.decision_latency_s),
        generation_latency=duration(update.generation_latency_s), num_tokens=int(update.num_tokens),
        error=update.error or "")


def guidance_event(event_type: int, stream_id: str, summary: str, header: Header, score: float = 0.0,
                   count: int = 0, turn_index: int = 0, regions=()) -> GuidanceEvent:
    return GuidanceEvent(header=header, stream_id=stream_id, event_type=event_type, turn_index=turn_index,
                         score=float(score), count=int(count), summary=summary, regions=regions_msg(regions))
