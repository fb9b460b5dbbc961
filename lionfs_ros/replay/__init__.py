"""Rosbag replay through the assistant, recording of live sessions, and replay reports."""
