"""QoS for camera subscriptions: SensorData-compatible by default."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def camera_qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last volatile, like rclpy's qos_profile_sensor_data.

    A best-effort subscription matches both best-effort and reliable publishers, which is why
    it is the default; 'reliable' is for links where every frame must arrive.
    """
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth,
        reliability=RELIABILITY[reliability], durability=DurabilityPolicy.VOLATILE)
