# Sourced by bin/test, bin/demo and bin/lock: the pinned uv that installs from the lock.
#
# uv installs a lock of ~100 packages in seconds where pip takes minutes, which CI's time
# budget feels four times a run. It is itself pinned, and comes from PyPI like everything
# else, into .venv-tools/ (kept between runs; a version change reinstalls it).
UV_VERSION=0.13.9

uv_bootstrap() {  # sets UV to the pinned uv, installing it on first use
  local python=${PYTHON:-python3}
  UV=.venv-tools/bin/uv
  if [ ! -x "$UV" ] || [ "$("$UV" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    [ -x .venv-tools/bin/python ] || "$python" -m venv .venv-tools
    .venv-tools/bin/python -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
  fi
}

# venv_from_lock DIR PYTHON LOCKFILE: DIR holds exactly LOCKFILE's pins (uv pip sync removes
# anything else), then this checkout in editable mode without resolving again.
venv_from_lock() {
  local dir=$1 python=$2 lock=$3
  if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c "" 2>/dev/null; then
    rm -rf "$dir"
    "$UV" venv -q --python "$python" "$dir"
  fi
  "$UV" pip sync -q --python "$dir/bin/python" "$lock"
  "$UV" pip install -q --python "$dir/bin/python" --no-deps -e .
}

# find_python X.Y: a python of that minor version from PATH or pyenv's versions (pyenv's
# shims only answer for the versions it has been told to use), or nothing.
find_python() {
  local want=$1 candidate
  for candidate in "python$want" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$want".*/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && [ "$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$want" ]; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}
