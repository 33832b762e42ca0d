#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, skipping those already present,
# so it is cheap to run on every CI job and on developer machines.
#   - GStreamer RTSP server + Python GI bindings: the real RTSP camera used by tests
#     (tests/support/rtsp_server.py, run with the system /usr/bin/python3).
#   - redis-server, mosquitto: brokers the publishing tests start on free ports.
#   - chromium, chromium-driver: the dashboard's browser tests.
# Usage: .ci/install-system-deps.sh [--dry-run]   (--dry-run only lists what is missing)
set -euo pipefail

REQUIRED_PACKAGES=(
  gir1.2-gst-rtsp-server-1.0
  python3-gi
  gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad
  gstreamer1.0-tools
  redis-server
  mosquitto
  chromium
  chromium-driver
)

dry_run=false
case "${1:-}" in
  "") ;;
  --dry-run) dry_run=true ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

is_installed() {
  local status
  status="$(dpkg -s "$1" 2>/dev/null)" || return 1
  [[ "$status" == *"Status: install ok installed"* ]]
}

missing_packages=()
for package in "${REQUIRED_PACKAGES[@]}"; do
  if ! is_installed "$package"; then
    missing_packages+=("$package")
  fi
done

if [ "${#missing_packages[@]}" -eq 0 ]; then
  echo "install-system-deps: all ${#REQUIRED_PACKAGES[@]} packages already installed"
  exit 0
fi

if [ "$dry_run" = true ]; then
  echo "install-system-deps: missing ${missing_packages[*]}"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
fi

echo "install-system-deps: installing ${missing_packages[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing_packages[@]}"
