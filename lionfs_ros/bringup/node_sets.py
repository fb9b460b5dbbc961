"""The node sets in config/node_sets.yaml, as data both launch files and `lionfs bringup` use."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lionfs_ros.config import ConfigError

PACKAGE = "lionfs_ros"
NODE_SETS_FILE = "node_sets.yaml"


@dataclass(frozen=True)
class NodeSpec:
    executable: str
    name: str
    remappings: dict[str, str] = field(default_factory=dict)
    # An essential node's exit ends the set; a non-essential one (a remote slow thinker) may die
    # and the rest carries on degraded.
    essential: bool = True

    def ros_args(self, params_file: Path, namespace: str = "") -> list[str]:
        """The --ros-args part of this node's command line."""
        args = ["--ros-args", "-r", f"__node:={self.name}", "--params-file", str(params_file)]
        if namespace:
            args += ["-r", f"__ns:={namespace}"]
        for source, target in self.remappings.items():
            args += ["-r", f"{source}:={target}"]
        return args


@dataclass(frozen=True)
class NodeSet:
    name: str
    description: str
    params_file: Path
    nodes: tuple[NodeSpec, ...]

    @property
    def executables(self) -> dict[str, str]:
        return {node.name: node.executable for node in self.nodes}


def config_dir() -> Path:
    """config/ of this package: the source tree's, else a ROS install's share directory."""
    source = Path(__file__).resolve().parents[2] / "config"
    if (source / NODE_SETS_FILE).is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / "config"
    except (ImportError, LookupError) as err:
        raise ConfigError(f"cannot find the {PACKAGE} config directory (looked in {source}): {err}") from err


def load_node_sets(path: Path | None = None) -> dict[str, NodeSet]:
    path = path or config_dir() / NODE_SETS_FILE
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read node sets: {err}") from err
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of node-set names")
    sets = {}
    for set_name, body in document.items():
        where = f"{path}: {set_name}"
        try:
            nodes = tuple(
                NodeSpec(str(n["executable"]), str(n["name"]), {str(k): str(v) for k, v in (n.get("remappings") or {}).items()},
                         _flag(n.get("essential", True), f"{where}: {n['name']}.essential"))
                for n in body["nodes"])
            sets[set_name] = NodeSet(set_name, str(body.get("description", "")), path.parent / body["params"], nodes)
        except (KeyError, TypeError) as err:
            raise ConfigError(f"{where}: each set needs 'params' and 'nodes' with 'executable' and 'name' ({err})") from err
    return sets


def get_node_set(name: str, path: Path | None = None) -> NodeSet:
    sets = load_node_sets(path)
    if name not in sets:
        raise ConfigError(f"unknown node set {name!r}; available: {', '.join(sorted(sets))}")
    return sets[name]


def _flag(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def camera_topic(set_name: str = "lionfs") -> str:
    """The camera topic the set's nodes listen to, relative to the namespace (`camera/image_raw`)."""
    for node in get_node_set(set_name).nodes:
        if "image_raw" in node.remappings:
            return node.remappings["image_raw"]
    return "image_raw"
