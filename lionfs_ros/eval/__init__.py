"""Metrics and `lionfs eval` (ROS-free)."""
