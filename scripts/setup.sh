#!/usr/bin/env bash
# Installs fgpose on a fresh Debian machine (run as root; uses sudo otherwise):
#   1. Debian packages: python3-venv, and OSMesa/EGL for headless pyrender;
#   2. a virtualenv in .venv with the exact versions of requirements.lock;
#   3. pyrender 0.1.45 with --no-deps: its PyOpenGL==3.1.0 pin has a broken OSMesa binding,
#      so the lock file carries PyOpenGL 3.1.10 and pyrender's other dependencies instead;
#   4. fgpose itself, editable.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends python3-venv libosmesa6 libgl1 libegl1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.lock
.venv/bin/python -m pip install -q --no-deps pyrender==0.1.45
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -c "import fgpose, jax, pyrender; print('fgpose ready: jax', jax.__version__, jax.devices())"
