#!/usr/bin/env bash
# The one prepared run for a GPU machine (Python with torch, no Node, no network). Build its inputs
# here first with bench/device/prepare.sh, which prints the carry list and the command. In one go,
# inside a hard time budget (PTC_BENCH_BUDGET seconds, default 330), stages in priority order:
#
#   gpu-tests   vitest: test/gpu (driver, caching allocator, CUDA graphs, NCCL with one rank over
#               the TCP store; the executor on CudaDevice) and test/parallel/nccl.test.ts (the
#               data-parallel collectives over NCCL, world size 1)
#   attention   bench/device/attention.py: the fused window-attention kernels, forward and backward,
#               vs PyTorch eager, SDPA with an additive mask and torch.compile (Swin-T and
#               PerceptNet-Large shapes), time and fraction of the copy bandwidth
#   forward     PerceptNet xxs forward on the GPU vs the CPU backend; CUDA-graph replay
#   train       xxs training steps on the GPU (`ptc train --device cuda`'s engine) vs the CPU trainer
#   time-s      the `s` config's training step on the GPU (bf16, f32 masters), fused and unfused
#               (--fuse both), CUDA graphs off/on
#   torch-eager the same step in PyTorch eager (bench/device/perceptnet_torch.py)
#   kernels     bench/device/kernels.py: ptc's kernels vs torch's ops
#   torch-compile  the PyTorch step under torch.compile (its compile time counts; skipped with a
#               logged reason when the budget left is too small)
#   cli         `ptc run --backend cuda` and `--backend cpu` on xxs (the user's path), if time is left
#
# Writes to $OUT: run.log, one JSON per stage, results.json and results.md (summarize.py).
# PTC_BENCH_STAGES=a,b,... runs only the named stages (a short device budget picks what it needs).
# PTC_BENCH_DRY_RUN=1 runs the same stages without a GPU (prepare.sh --dry-run does, in a copy of
# the tree): the Node side on the PTX emulator with small sizes, PyTorch on the CPU with xxs.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ptc-device-out}
mkdir -p "$OUT"
DRY=${PTC_BENCH_DRY_RUN:-0}
BUDGET=${PTC_BENCH_BUDGET:-$([ "$DRY" = 1 ] && echo 1500 || echo 330)}
START=$(date +%s)
PY=${PTC_BENCH_PYTHON:-python3} # the dry run points it at a venv with torch
SCALE=$([ "$DRY" = 1 ] && echo 5 || echo 1) # stage limits: the emulator is ~1000x slower than a GPU
exec > >(tee -a "$OUT/run.log") 2>&1
echo "ptc device run: $(date -u +%FT%TZ), budget ${BUDGET}s, dry run: $DRY, out: $OUT"
: >"$OUT/stages.tsv"

elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET - $(elapsed))); }

# stage NAME LIMIT MIN CMD...: runs CMD with at most LIMIT seconds (less when the budget is short);
# skips it, with the reason, when fewer than MIN seconds are left.
stage() {
  local name=$1 limit=$(($2 * SCALE)) min=$3
  shift 3
  if [ -n "${PTC_BENCH_STAGES:-}" ] && [[ ",$PTC_BENCH_STAGES," != *",$name,"* ]]; then
    echo "== $name: not selected (PTC_BENCH_STAGES=$PTC_BENCH_STAGES)"
    printf '%s\tskipped\t0\tnot selected\n' "$name" >>"$OUT/stages.tsv"
    return
  fi
  local l
  l=$(left)
  local t=$((limit < l - 10 ? limit : l - 10))
  if ((t < min)); then
    echo "== $name: skipped (budget: ${l}s left, needs ${min}s)"
    printf '%s\tskipped\t0\tbudget: %ss left, needs %ss\n' "$name" "$l" "$min" >>"$OUT/stages.tsv"
    return
  fi
  echo "== $name (limit ${t}s, at $(elapsed)s)"
  local s0 rc
  s0=$(date +%s)
  timeout --signal=TERM --kill-after=5 "$t" "$@"
  rc=$?
  local dt=$(($(date +%s) - s0))
  local status=ok
  ((rc == 124 || rc == 137)) && status=timeout
  ((rc != 0 && rc != 124 && rc != 137)) && status="failed(rc=$rc)"
  echo "== $name: $status in ${dt}s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$dt" "limit ${t}s" >>"$OUT/stages.tsv"
}

# ---- Node and node_modules (carried in .gpu-node, see prepare.sh) ----------------------------------
if [ "$DRY" = 1 ] || ! command -v node >/dev/null; then
  mkdir -p /tmp/ptc-node
  xz -dc .gpu-node/node.xz >/tmp/ptc-node/node && chmod +x /tmp/ptc-node/node && export PATH=/tmp/ptc-node:$PATH
fi
if [ ! -d node_modules/vitest ] || [ ! -d node_modules/typescript ]; then
  tar -xJf .gpu-node/nm.tar.xz
fi
echo "node $(node --version) at $(command -v node); node_modules: $(ls node_modules | wc -l) packages"
export UV_THREADPOOL_SIZE=16 # the driver's PTX JIT runs on libuv's pool: many modules at once
export FORCE_COLOR=0

# NCCL: the machine's libnccl.so.2 (PyTorch's wheel brings one).
if [ -z "${PTC_NCCL_LIBRARY:-}" ]; then
  lib=$("$PY" -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib", "libnccl.so.2"))' 2>/dev/null)
  [ -f "${lib:-}" ] || lib=$(timeout 20 find /usr /opt /root /home -name libnccl.so.2 -print -quit 2>/dev/null)
  [ -n "${lib:-}" ] && export PTC_NCCL_LIBRARY=$lib
fi
echo "PTC_NCCL_LIBRARY=${PTC_NCCL_LIBRARY:-none}"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' || true
node -e 'const a = require("./build/Release/ptc_cuda.node"); console.log("driver:", JSON.stringify(a.probe()))' || true

# TypeScript entry points through the project's loader (an array: `timeout` cannot run a function).
TS=(node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";register("./bin/ts-loader.js",pathToFileURL("./"));await import(process.argv[1])')

if [ "$DRY" = 1 ]; then
  DEV=ptx-emu
  FWD=(--config xxs --micro-batch 1 --steps 1)
  TRAIN=(--config xxs --micro-batch 1 --accum 2 --image 32 --steps 1)
  TIME=(--config xxs --micro-batch 1 --image 32 --steps 1 --warmup 0)
  TORCH=(dist/device-bench/perceptnet-xxs.json --device cpu --batch 2 --steps 1 --warmup 0)
  COMPILE=(--compile-backend eager)
else
  DEV=cuda
  FWD=(--config xxs --micro-batch 2 --steps 5)
  TRAIN=(--config xxs --micro-batch 2 --accum 2 --steps 3)
  TIME=(--config s --micro-batch 8 --steps 5 --warmup 2)
  TORCH=(dist/device-bench/perceptnet-s.json --device cuda --batch 8 --steps 10 --warmup 3)
  COMPILE=()
fi

# ---- stages ---------------------------------------------------------------------------------------
# (vitest.config.ts's json reporter writes .vitest-report.json; it is copied to $OUT.)
stage gpu-tests 110 30 bash -c 'node node_modules/vitest/vitest.mjs run test/gpu test/parallel/nccl.test.ts \
  --typecheck.enabled=false --reporter=verbose --reporter=json; rc=$?; cp .vitest-report.json "$1/gpu-tests.json"; exit $rc' _ "$OUT"
if [ "$DRY" = 1 ]; then
  # attention.py needs a GPU for its kernels: here its syntax and its CPU check of the torch baselines.
  stage attention 30 5 bash -c '"$1" -m py_compile bench/device/attention.py && "$1" bench/device/attention.py --check-reference' _ "$PY"
else
  stage attention 100 20 "$PY" bench/device/attention.py dist/device-attention --out "$OUT/attention.json" --budget 85
fi
stage forward 90 20 "${TS[@]}" ./bench/device/model-bench.ts --stage forward --device $DEV "${FWD[@]}" --out "$OUT/forward.json"
stage train 100 20 "${TS[@]}" ./bench/device/model-bench.ts --stage train --device $DEV "${TRAIN[@]}" --precision f32 --out "$OUT/train.json"
stage time-s 110 30 "${TS[@]}" ./bench/device/model-bench.ts --stage time --device $DEV "${TIME[@]}" --graphs both --fuse both --out "$OUT/time.json"
stage torch-eager 60 15 "$PY" bench/device/perceptnet_torch.py "${TORCH[@]}" --mode eager --out "$OUT/torch-eager.json"
if [ "$DRY" = 1 ]; then
  # kernels.py needs a GPU: here only its syntax and its argument handling.
  stage kernels 30 5 "$PY" -m py_compile bench/device/kernels.py bench/device/perceptnet_torch.py bench/device/summarize.py
else
  stage kernels 60 20 "$PY" bench/device/kernels.py dist/device-kernels --out "$OUT/kernels.json"
fi
stage torch-compile 150 60 "$PY" bench/device/perceptnet_torch.py "${TORCH[@]}" --mode compile "${COMPILE[@]}" --out "$OUT/torch-compile.json"
stage cli 60 25 bash -c "node bin/ptc.js run model/perceptnet.ts --config xxs --seed 3 --no-typecheck --backend $DEV -o '$OUT/xxs-$DEV.safetensors' &&
  node bin/ptc.js run model/perceptnet.ts --config xxs --seed 3 --no-typecheck --backend cpu -o '$OUT/xxs-cpu.safetensors'"

"$PY" bench/device/summarize.py "$OUT" || echo "summarize failed"
echo "done in $(elapsed)s"
