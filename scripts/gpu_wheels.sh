#!/usr/bin/env bash
# Download, where pip works, the wheels that scripts/gpu_check.sh installs on an offline GPU
# machine (Python 3.12, x86-64): the benchmark's peers and what they need beyond a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl \
    titans-pytorch==0.5.5 assoc-scan accelerated-scan axial-positional-embedding einx hyper-connections \
    rotary-embedding-torch tensordict x-transformers torch-einops-utils frozendict pyvers loguru \
    flash-linear-attention==0.6.0 fla-core==0.6.0
ls .whl
