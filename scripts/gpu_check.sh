#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the Triton kernel's equivalence tests on CUDA (float32 and
# bfloat16) and the kernel benchmark, in one command. Prints a markdown table.
#
#   bash scripts/gpu_check.sh              # uses the python3 that has a CUDA torch
#
# Peers the benchmark compares with (titans-pytorch, flash-linear-attention) are used when
# importable; on a machine without network, `bash scripts/gpu_wheels.sh` (run where pip works)
# puts their wheels into .whl/, which this script installs first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/titans_seq_site .whl/*.whl
    export PYTHONPATH=/tmp/titans_seq_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
"$PY" -m pytest -q -p no:cacheprovider tests/memory/test_triton.py tests/memory/test_operator.py
"$PY" benchmarks/memory_kernel.py "$@"
