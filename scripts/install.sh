#!/usr/bin/env bash
# Installs what sinter needs to build and test; skips what is present. Idempotent.
#   scripts/install.sh          build + test dependencies
#   SINTER_NO_PY=1 ...          skip the Python test-side references (tensorboard, pystoi)
set -euo pipefail

deb_pkgs=(build-essential cmake pkg-config libopenblas-dev libcmocka-dev libsndfile1-dev libsamplerate0-dev
          libyaml-dev libfftw3-dev espeak-ng clang libclang-rt-dev
          libopenmpi-dev openmpi-bin
          python3 python3-numpy)
brew_pkgs=(cmake pkg-config cmocka libsndfile libsamplerate libyaml fftw espeak-ng open-mpi)

need_sudo() { if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then echo sudo; fi; }

if [ "$(uname)" = Darwin ]; then
  command -v brew >/dev/null || { echo "install.sh: Homebrew is needed on macOS (https://brew.sh)" >&2; exit 1; }
  missing=()
  for p in "${brew_pkgs[@]}"; do brew list --versions "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] || brew install "${missing[@]}"
elif command -v apt-get >/dev/null; then
  missing=()
  for p in "${deb_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install.sh: installing ${missing[*]}"
    S=$(need_sudo)
    $S apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $S apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
else
  echo "install.sh: no apt-get or Homebrew; install by hand: ${deb_pkgs[*]}" >&2
fi

# Test-side references only (sinter itself never needs Python).
if [ -z "${SINTER_NO_PY:-}" ] && command -v python3 >/dev/null; then
  py_missing=()
  python3 -c "import tensorboard" 2>/dev/null || py_missing+=(tensorboard)
  python3 -c "import pystoi" 2>/dev/null || py_missing+=(pystoi)
  python3 -c "import numpy" 2>/dev/null || py_missing+=(numpy)
  if [ ${#py_missing[@]} -gt 0 ]; then
    python3 -m pip install -q "${py_missing[@]}" 2>/dev/null \
      || python3 -m pip install -q --break-system-packages "${py_missing[@]}" \
      || echo "install.sh: could not pip install ${py_missing[*]}; the tests that read them back will be skipped" >&2
  fi
fi
echo "install.sh: dependencies present"
