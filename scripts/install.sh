#!/usr/bin/env bash
# Installs what sinter needs to build and test; skips what is present. Idempotent.
#   scripts/install.sh          build + test dependencies
#   SINTER_PY_TORCH=1 ...       also put PyTorch into .venv (large; for the torch interop test, bench/)
#   SINTER_SKIP_PY_REFS=1 ...   no .venv: the tests that check against Python packages report "skipped"
set -euo pipefail

deb_pkgs=(build-essential cmake pkg-config libopenblas-dev libcmocka-dev libsndfile1-dev libsamplerate0-dev
          libyaml-dev libfftw3-dev espeak-ng clang libclang-rt-dev
          python3 python3-venv)
brew_pkgs=(cmake pkg-config cmocka libsndfile libsamplerate libyaml fftw espeak-ng python@3.13)

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

# Test-side references only (sinter itself never needs Python): a project-local virtual
# environment, .venv/, with the pinned packages of tests/requirements.txt. The tests run its
# interpreter (CMake's SINTER_PYTHON); nothing goes into the system Python.
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv
if [ -n "${SINTER_SKIP_PY_REFS:-}" ] && [ "${SINTER_SKIP_PY_REFS}" != 0 ]; then
  echo "install.sh: SINTER_SKIP_PY_REFS is set: no .venv; the Python reference checks will be SKIPPED" >&2
else
  reqs=("$root/tests/requirements.txt")
  [ -z "${SINTER_PY_TORCH:-}" ] || reqs+=("$root/tests/requirements-torch.txt")
  pins_ok() {  # .venv runs and holds every name==version of the requirement files
    "$venv/bin/python" - "${reqs[@]}" 2>/dev/null <<'PY'
import re, sys
from importlib.metadata import version
for path in sys.argv[1:]:
    for line in open(path):
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", line)
        if m and version(m[1]) != m[2]:
            sys.exit(1)
PY
  }
  if ! pins_ok; then
    if [ "$(uname)" = Darwin ]; then base=$(brew --prefix python@3.13)/bin/python3.13
    elif [ -x /usr/bin/python3 ]; then base=/usr/bin/python3  # the one python3-venv is for
    else base=python3; fi
    fail() {
      echo "install.sh: $1" >&2
      echo "install.sh: make test needs .venv for its Python reference checks; to build and test without" \
           "them, set SINTER_SKIP_PY_REFS=1 (those checks are then reported as skipped)" >&2
      exit 1
    }
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
      # missing, or made by a Python that is gone (e.g. upgraded): start again
      [ ! -e "$venv" ] || [ -f "$venv/pyvenv.cfg" ] || fail "$venv exists and is not a virtual environment"
      rm -rf "$venv"
      echo "install.sh: creating $venv with $base"
      "$base" -m venv "$venv" || fail "could not create $venv with $base -m venv"
    fi
    echo "install.sh: installing $(grep -ho '^[A-Za-z0-9_.-]*==[^ ]*' "${reqs[@]}" | head -5 | tr '\n' ' ')... into .venv"
    r_args=(); for r in "${reqs[@]}"; do r_args+=(-r "$r"); done
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: "${r_args[@]}" \
      || fail "pip could not install ${reqs[*]} into $venv (is PyPI reachable?)"
    pins_ok || fail "pip ran, but .venv does not hold the versions of ${reqs[*]}"
  fi
fi
echo "install.sh: dependencies present"
