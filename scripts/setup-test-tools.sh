#!/usr/bin/env bash
# Tools the test suite needs beyond the venv: headless Chromium renders report.html in
# test/replay. Idempotent and fast when everything is present. Installs only as root with
# apt-get (Debian, as in CI); elsewhere it says what is missing and exits 0 so the tests that
# need it skip with that reason instead of the whole setup failing.
set -euo pipefail

# Debian names the browser `chromium`; other distributions' names are accepted if present.
BROWSERS=(chromium chromium-browser google-chrome)

have_browser() {
    local name
    for name in "${BROWSERS[@]}"; do
        command -v "$name" >/dev/null 2>&1 && return 0
    done
    return 1
}

if have_browser; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-test-tools: chromium is missing and cannot be installed here (needs root and apt-get);" \
         "the HTML rendering test will be skipped" >&2
    exit 0
fi
echo "setup-test-tools: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists yet; update only when the first try cannot find it.
if ! apt-get install -y --no-install-recommends chromium >/tmp/setup-test-tools-apt.log 2>&1; then
    apt-get update >>/tmp/setup-test-tools-apt.log 2>&1
    apt-get install -y --no-install-recommends chromium >>/tmp/setup-test-tools-apt.log 2>&1 || {
        echo "setup-test-tools: apt-get install chromium failed; see /tmp/setup-test-tools-apt.log" >&2
        exit 1
    }
fi
have_browser
