# lionfs_ros: `make demo` runs the main job, `make test` the test suite; both set up first.
VENV ?= .venv
PYTHON ?= python3.11
export PYTHON
export LIONFS_VENV := $(abspath $(VENV))
# ROS traffic stays on this machine (see README, "Network").
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST

.PHONY: setup demo test clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/lionfs demo

test: setup
	@bash scripts/setup-test-tools.sh
	$(VENV)/bin/python -m pytest test

clean:
	rm -rf build install log
