# Sourced by tools/run.sh and tools/install.sh: sets MMKD_STACK (default newest) and PYTHON.
# MMKD_STACK=newest installs into $PYTHON (default python3); MMKD_STACK=reference uses, and creates
# when missing, its own virtual environment ($MMKD_VENV_DIR/reference, default
# ~/.cache/mmkd_plugins/venvs/reference) unless $PYTHON is set, so that the reference pins (torch
# 2.1.2 and its CUDA 12 libraries) never replace the newest stack's packages in the same interpreter.
export MMKD_STACK=${MMKD_STACK:-newest}
if [ "$MMKD_STACK" = reference ] && [ -z "${PYTHON:-}" ]; then
  _mmkd_venv="${MMKD_VENV_DIR:-$HOME/.cache/mmkd_plugins/venvs}/reference"
  if [ ! -x "$_mmkd_venv/bin/python" ]; then
    echo "[stack] creating the reference-stack virtual environment $_mmkd_venv" >&2
    python3 -m venv "$_mmkd_venv"
  fi
  export PYTHON="$_mmkd_venv/bin/python"
fi
export PYTHON=${PYTHON:-python3}
