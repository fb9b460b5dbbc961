"""Params files are checked against the nodes' declared parameters, naming file and key."""
import pytest

from lionfs_ros.bringup.node_sets import config_dir, get_node_set, load_node_sets
from lionfs_ros.config import ConfigError, StreamMonitorParams, build_params, validate_params_file

EXECUTABLES = {"stream_monitor": "stream_monitor"}


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_shipped_params_files_are_valid():
    for node_set in load_node_sets().values():
        validate_params_file(node_set.params_file, node_set.executables)


@pytest.mark.parametrize("text, fragment", [
    ("stream_monitor:\n  ros__parameters:\n    stall_timout: 1.0\n",
     "stream_monitor.ros__parameters.stall_timout: unknown parameter 'stall_timout' (did you mean 'stall_timeout'?)"),
    ("/**:\n  ros__parameters:\n    reliability: sometimes\n", "/**.ros__parameters.reliability: reliability must be one of"),
    ("stream_monitor:\n  ros__parameters:\n    qos_depth: five\n", "qos_depth must be int, got 'five'"),
    ("stream_monitor:\n  ros__parameters:\n    qos_depth: 0\n", "qos_depth must be >= 1"),
    ("stream_monitor:\n  parameters:\n    qos_depth: 3\n", "stream_monitor: expected a 'ros__parameters' mapping"),
    ("stream_monitor:\n  ros__parameters:\n    qos_depth: [1\n", "not valid YAML"),
    ("- just\n- a list\n", "expected a mapping of node names"),
])
def test_malformed_params_name_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        validate_params_file(path, EXECUTABLES)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)


def test_missing_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        validate_params_file(tmp_path / "nope.yaml", EXECUTABLES)


def test_ros_builtins_and_other_nodes_are_allowed(tmp_path):
    path = write(tmp_path, "/**:\n  ros__parameters:\n    use_sim_time: true\n"
                           "other_node:\n  ros__parameters:\n    anything: 1\n")
    validate_params_file(path, EXECUTABLES)


def test_ints_widen_to_float_parameters():
    params = build_params(StreamMonitorParams, {"stall_timeout": 2})
    assert params.stall_timeout == 2.0 and isinstance(params.stall_timeout, float)


def test_node_sets_resolve_their_params_under_config():
    node_set = get_node_set("lionfs")
    assert node_set.params_file.parent == config_dir()
    with pytest.raises(ConfigError, match="unknown node set 'nope'"):
        get_node_set("nope")
