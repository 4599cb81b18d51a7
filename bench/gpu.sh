#!/usr/bin/env bash
# The benchmarks on a CUDA machine in a few minutes: `bash bench/gpu.sh [TAG]`.
#
# Runs the modes, peers, scaling, budget and auto suites on the GPU with Hamiltonian 32-64-128 on CIFAR-shaped
# input (32x32x3) at batch 128, up to hamiltonian-1202 (100 blocks per stage), and writes
# docs/bench/<suite>-<TAG>.{json,md,html}; TAG defaults to the GPU's short name (h100, a100,
# ...). The device name, torch/memcnn/revlib versions and the exact command are stored in every
# file and shown on the figures. Creates .venv (scripts/setup.sh) and installs the bench extra
# when they are missing; a peer that does not install or import gets a note in its row.
#
# Environment: BATCH (default 128), BUDGET_MIB for the scaling suite (default 4096),
# OUT (default docs/bench), DEVICE (default cuda). SMOKE=1 runs toy sizes instead, on any
# device, to check the plumbing: `SMOKE=1 DEVICE=cpu OUT=/tmp/bench bash bench/gpu.sh cpu`.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${DEVICE:-cuda}
OUT=${OUT:-docs/bench}
PY=.venv/bin/python

if [ ! -x "$PY" ]; then
    echo "== setting up .venv (scripts/setup.sh)"
    bash scripts/setup.sh
fi
if ! "$PY" -c "import memcnn, revlib" >/dev/null 2>&1; then
    echo "== installing the bench extra (memcnn, revlib)"
    "$PY" -m pip install -q -e '.[bench]' || echo "!! bench extra did not install; peers rows will say why"
fi

if [ "$DEVICE" = cuda ]; then
    "$PY" - <<'PY' || exit 1
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__}; "
             "run with DEVICE=cpu (and SMOKE=1) to check the plumbing")
print(f"== {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
fi

TAG=${1:-$("$PY" - "$DEVICE" <<'PY'
import re, sys, torch
if sys.argv[1].startswith("cuda"):
    name = torch.cuda.get_device_name(0).lower().replace("nvidia", "")
    short = re.search(r"\b[a-z]\d{2,4}[a-z]?\b", name)  # h100, a100, v100, l40s
    print(short.group(0) if short else re.sub(r"[^a-z0-9]+", "-", name).strip("-"))
else:
    print(sys.argv[1])
PY
)}

if [ "${SMOKE:-0}" = 1 ]; then
    COMMON=(--widths 8,8,16,16 --batch 2 --size 8 --repeats 1 --warmup 0)
    MODES_DEPTHS=1; PEERS_DEPTHS=1; SCALING_DEPTHS=1,2; BUDGET=(--blocks 2 --steps 3 --compile-blocks 1)
    AUTO=(--blocks 2)
else
    COMMON=(--widths 32,32,64,128 --batch "${BATCH:-128}" --size 32 --repeats 5 --warmup 1)
    MODES_DEPTHS=6,18,100; PEERS_DEPTHS=6,18,100; SCALING_DEPTHS=1,2,6,18,50,100
    BUDGET=(--blocks 18 --steps 6 --compile-blocks 2)
    AUTO=(--blocks 18)
fi

run() {
    local start=$SECONDS
    echo "== python -m lab bench $*"
    "$PY" -m lab bench "$@" --device "$DEVICE" --out "$OUT" --tag "$TAG"
    echo "== $1 took $((SECONDS - start)) s"
}

total=$SECONDS
run peers --depths "$PEERS_DEPTHS" "${COMMON[@]}"
run scaling --depths "$SCALING_DEPTHS" --budget-mib "${BUDGET_MIB:-4096}" "${COMMON[@]}"
run modes --depths "$MODES_DEPTHS" "${COMMON[@]}"
run budget --compile "${BUDGET[@]}" "${COMMON[@]}"   # budget mode; torch.compile vs eager
# memory="auto" at three limits, and with none: the GPU's free memory (mem_get_info) decides
run auto "${AUTO[@]}" "${COMMON[@]}"
echo "== all benchmarks took $((SECONDS - total)) s; results in $OUT/*-$TAG.{json,md,html}"
