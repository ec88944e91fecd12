#!/usr/bin/env bash
# Create the project's virtual environment and install titans_seq into it.
#
# Torch is installed first and on its own, so that pip never resolves an unpinned torch (which
# means gigabytes of CUDA wheels on a machine that has no GPU):
#   - a torch already importable by $PYTHON is reused (the venv sees the system site-packages);
#   - otherwise $TORCH_SPEC is installed (default torch==2.13.0, the CPU build where one is
#     provided locally); set TORCH_INDEX_URL to install from a CPU or CUDA wheel index instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-test}

if [ ! -x "$VENV/bin/python" ]; then
    if "$PYTHON" -c "import torch" 2>/dev/null; then
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        "$PYTHON" -m venv "$VENV"
    fi
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "${PIP[@]}" "${TORCH_SPEC:-torch==2.13.0}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi
# Pin the torch now installed, so that no dependency can swap it for another build.
TORCH_PIN=$(mktemp)
trap 'rm -f "$TORCH_PIN"' EXIT
"$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$TORCH_PIN"
"${PIP[@]}" -c "$TORCH_PIN" -e ".[$EXTRAS]"
"$VENV/bin/python" -c "import torch, titans_seq; print(f'titans_seq {titans_seq.__version__} with torch {torch.__version__} in $VENV')"
