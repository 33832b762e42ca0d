#!/usr/bin/env bash
# Creates .venv with the project installed (and, with --test, the test tools), on a fresh
# Debian/Ubuntu machine with Python 3.11. Installs the few Debian packages it needs if missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
EXTRAS=""
[ "${1:-}" = "--test" ] && EXTRAS="[test]"

SUDO=()
[ "$(id -u)" -ne 0 ] && SUDO=(sudo)
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed$' || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
}

if ! command -v "$PYTHON" >/dev/null; then
  echo "setup: $PYTHON not found; install Python 3.11 (Debian 12: apt-get install python3.11)" >&2
  exit 1
fi
if command -v dpkg >/dev/null; then
  # Debian's own Python needs venv, and the embedded tritonserver's Python-backend stub links
  # against libpython3.11.so (pyenv and python.org builds carry their own).
  if [ "$("$PYTHON" -c 'import sys; print(sys.prefix)')" = "/usr" ]; then
    apt_install python3.11-venv libpython3.11
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${EXTRAS}"
echo "setup: .venv ready ($(.venv/bin/python --version))"
