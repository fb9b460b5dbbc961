"""ros2 launch lionfs_ros lionfs.launch.py [node_set:=lionfs] [params_file:=FILE] [namespace:=NS]

Starts the same node set as `lionfs bringup` (config/node_sets.yaml): same executables, node
names, params file, remappings, and which nodes are essential (an essential node's exit shuts
the launch down; a non-essential one may die while the others carry on); node_set:=lionfs_ar adds
the WebSocket bridge (docs/BRIDGE.md). The nodes keep DDS discovery on this host unless
ROS_AUTOMATIC_DISCOVERY_RANGE is set in the environment.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from lionfs_ros.bringup.node_sets import get_node_set


def _nodes(context, *args, **kwargs):
    node_set = get_node_set(LaunchConfiguration("node_set").perform(context))
    params_file = LaunchConfiguration("params_file").perform(context) or str(node_set.params_file)
    namespace = LaunchConfiguration("namespace").perform(context)
    return [
        Node(package="lionfs_ros", executable=spec.executable, name=spec.name, namespace=namespace,
             parameters=[params_file], remappings=list(spec.remappings.items()), output="screen",
             on_exit=Shutdown(reason=f"{spec.name} exited") if spec.essential else None)
        for spec in node_set.nodes
    ]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("node_set", default_value="lionfs", description="node set in config/node_sets.yaml"),
        DeclareLaunchArgument("params_file", default_value="", description="params file (default: the set's)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace for every node"),
        OpaqueFunction(function=_nodes),
    ])
