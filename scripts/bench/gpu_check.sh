#!/usr/bin/env bash
# The GPU check, one command on a machine with a CUDA GPU (about 7 minutes on an H200):
#   1. the CUDA-only tests (tests/training/test_gpu.py: no host sync between log points, fused optimizers,
#      compile, accumulation, channels_last, bf16/fp16 end to end), at most 180 s;
#   2. scripts/bench/gpu.py: frame vs a raw loop vs Lightning per step (fp32, bf16, compile; 2 rounds), at most 290 s.
# Run from the repository root; PYTHONPATH/python as set up for the machine. Logs and JSON go to
# $OUT (default ./gpu-check): pytest.log, gpu.log, gpu.json, nvidia-smi.txt.
set -u
PYTHON=${PYTHON:-python}
OUT=$(mkdir -p "${OUT:-gpu-check}" && cd "${OUT:-gpu-check}" && pwd)
# frame finds its configs as the package frame.conf (pyproject maps conf/ there): install it once if needed
"$PYTHON" -c 'import frame.conf' 2>/dev/null ||
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
"$PYTHON" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())' | tee -a "$OUT/nvidia-smi.txt"

export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/frame-inductor}  # shared by the tests and the bench
timeout 180 "$PYTHON" -m pytest -q -p no:cacheprovider tests/training/test_gpu.py --basetemp=/tmp/frame-gpu-bt -rA \
    >"$OUT/pytest.log" 2>&1
tests=$?
tail -n 25 "$OUT/pytest.log"

(cd scripts/bench && timeout 290 "$PYTHON" gpu.py --rounds 2 --out "$OUT/gpu.json") >"$OUT/gpu.log" 2>&1
bench=$?
grep -v '^ \|^{\|^}' "$OUT/gpu.log" | tail -n 30
echo "tests rc=$tests bench rc=$bench"
exit $(( tests || bench ))
