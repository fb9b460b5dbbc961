"""pip side of the lionfs_ros package (the interfaces are built by CMakeLists.txt).

`make setup` installs this editable into .venv after the pinned requirements in
requirements/; the dependency list below is the loose one for people installing by hand.
"""
from setuptools import find_packages, setup

ENTRY_POINTS = {
    "console_scripts": [
        "lionfs = lionfs_ros.cli:main",
        "stream_monitor = lionfs_ros.nodes.entry_points:stream_monitor",
        "lionfs_node = lionfs_ros.nodes.entry_points:lionfs_node",
        "slow_thinker_node = lionfs_ros.nodes.entry_points:slow_thinker_node",
        "bridge = lionfs_ros.nodes.entry_points:bridge",
    ]
}

setup(
    name="lionfs_ros",
    version="0.1.0",
    description="LION-FS fast & slow online video assistant as a ROS 2 package",
    packages=find_packages(include=["lionfs_ros", "lionfs_ros.*"]),
    include_package_data=True,
    package_data={"lionfs_ros": [
        "data/synth/*.yaml", "data/synth/README.md",
        "resources/demo_model/*.json", "resources/demo_model/*.safetensors", "resources/demo_model/tokenizer/*.json",
        "resources/web/*",
    ]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0",
        "peft>=0.17",
        "accelerate>=1.0",
        "safetensors>=0.4",
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "pillow>=10",
        "PyYAML>=6",
        "rosbags>=0.10",
        "tqdm>=4.60",
        "foxglove-sdk>=0.30",
    ],
    entry_points=ENTRY_POINTS,
)
