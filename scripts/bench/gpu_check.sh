#!/usr/bin/env bash
# The GPU check, one command on a machine with a CUDA GPU (at most 8 minutes; each step's timeout below):
#   1. the CUDA-only tests (tests/training/test_gpu.py: no host sync between log points, fused optimizers,
#      compile, accumulation, channels_last, bf16/fp16 end to end), at most 120 s;
#   2. scripts/bench/gpu.py --case resnet50: the loop alone, frame vs raw per step on a ResNet-50 (224^2,
#      batch 128, batches made on the device), fp32 and bf16, 3 interleaved rounds, at most 170 s;
#   3. scripts/bench/gpu.py --case unet128: a 3D UNet at 128^3, batch 4, frame vs raw vs Lightning, fp32 and
#      bf16, 2 rounds, at most 170 s.
# gpu.py writes its JSON after each variant, so a step cut short by its timeout keeps what it measured.
# Run from the repository root; PYTHONPATH/python as set up for the machine. Logs and JSON go to
# $OUT (default ./gpu-check): pytest.log, resnet50.{log,json}, unet128.{log,json}, nvidia-smi.txt.
set -u
PYTHON=${PYTHON:-python}
OUT=$(mkdir -p "${OUT:-gpu-check}" && cd "${OUT:-gpu-check}" && pwd)
# frame finds its configs as the package frame.conf (pyproject maps conf/ there): install it once if needed
"$PYTHON" -c 'import frame.conf' 2>/dev/null ||
    "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1
"$PYTHON" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())' | tee -a "$OUT/nvidia-smi.txt"

export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/frame-inductor}  # shared by the tests and the bench
timeout 120 "$PYTHON" -m pytest -q -p no:cacheprovider tests/training/test_gpu.py --basetemp=/tmp/frame-gpu-bt -rA \
    >"$OUT/pytest.log" 2>&1
tests=$?
tail -n 25 "$OUT/pytest.log"

bench=0
for case in resnet50 unet128; do
    rounds=$([ $case = resnet50 ] && echo 3 || echo 2)
    (cd scripts/bench && timeout 170 "$PYTHON" gpu.py --case $case --rounds "$rounds" --variants fp32,bf16 \
        --out "$OUT/$case.json") >"$OUT/$case.log" 2>&1 || bench=1
    grep -v '^ \|^{\|^}' "$OUT/$case.log" | tail -n 12
done
echo "tests rc=$tests bench rc=$bench"
exit $(( tests || bench ))
