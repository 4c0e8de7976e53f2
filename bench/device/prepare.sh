#!/usr/bin/env bash
# Run HERE (no GPU needed) before bench/device/run.sh goes to a GPU machine that has Python but no
# Node and no network. Builds everything that run needs and prints the exact carry list and command:
#
#   .gpu-node/node.xz       this machine's node binary (../shared/tools/device-carry-node.sh)
#   .gpu-node/nm.tar.xz     node_modules without the dev-only tools (Biome, dependency-cruiser) and
#                           caches, with typescript (the TS loader transpiles on a cache miss, and
#                           the loader's cache is keyed by absolute paths, which differ there)
#   build/                  the ptc_cuda addon (node-gyp; dlopens libcuda there)
#   dist/device-kernels/    PTX + manifest for bench/device/kernels.py (bench/kernels.ts --device)
#   dist/device-attention/  PTX + manifest for bench/device/attention.py (bench/device/attention-cases.ts)
#   dist/device-bench/      PerceptNet configs for bench/device/perceptnet_torch.py, with ptc's
#                           parameter counts
#
# --dry-run also runs bench/device/run.sh here, in a copy of the tree made as the device machine
# makes it (tracked + untracked-not-ignored files + the carried paths), with PTC_BENCH_DRY_RUN=1:
# the carried node and node_modules, every stage's Node side on the PTX emulator, PyTorch on the CPU.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
CARRY=(.gpu-node build dist/device-kernels dist/device-attention dist/device-bench)
LIMIT=$((64 * 1024 * 1024))
ts() { node --input-type=module -e 'import{register}from"node:module";import{pathToFileURL}from"node:url";register("./bin/ts-loader.js",pathToFileURL("./"));await import(process.argv[1])' "$@"; }

[ -f build/Release/ptc_cuda.node ] || npx node-gyp rebuild -j max
"$root/../shared/tools/device-carry-node.sh" >/dev/null

# node_modules: rebuilt when the lock file or this list changes.
EXCLUDES=(--exclude=node_modules/@biomejs --exclude=node_modules/dependency-cruiser --exclude=node_modules/.cache
  --exclude=node_modules/.vite --exclude=node_modules/.vite-temp --exclude=node_modules/@types)
stamp=$( (sha1sum package-lock.json; echo "${EXCLUDES[*]}") | sha1sum | cut -c1-16)
if [ ! -f .gpu-node/nm.tar.xz ] || [ "$(cat .gpu-node/nm.stamp 2>/dev/null)" != "$stamp" ]; then
  echo "packing node_modules (with typescript) ..."
  tar -cf - "${EXCLUDES[@]}" node_modules | xz -T2 -6 >.gpu-node/nm.tar.xz.tmp
  mv .gpu-node/nm.tar.xz.tmp .gpu-node/nm.tar.xz
  echo "$stamp" >.gpu-node/nm.stamp
fi

ts ./bench/kernels.ts --device dist/device-kernels >/dev/null
ts ./bench/device/attention-cases.ts dist/device-attention
ts ./bench/device/write-configs.ts -- dist/device-bench xxs s

total=$(du -cb "${CARRY[@]}" | tail -1 | cut -f1)
du -sh "${CARRY[@]}"
if ((total > LIMIT)); then
  echo "the carried paths take $((total / 1048576)) MiB, over the 64 MiB a device run carries" >&2
  exit 1
fi
echo "carried: $((total / 1048576)) MiB of 64"
carry_json=$(printf '"%s", ' "${CARRY[@]}")
echo "device run: carry [${carry_json%, }], timeout_s 420, command: bash bench/device/run.sh"

if [ "${1:-}" = "--dry-run" ]; then
  dry=${PTC_DRY_DIR:-/tmp/ptc-device-dry}
  out=${PTC_DRY_OUT:-/tmp/ptc-device-dry-out}
  rm -rf "$dry" "$out"
  mkdir -p "$dry" "$out"
  git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$dry"
  tar -cf - "${CARRY[@]}" | tar -xf - -C "$dry"
  echo "dry run in $dry (out: $out)"
  (cd "$dry" && env -u PTC_NCCL_LIBRARY PTC_BENCH_DRY_RUN=1 PTC_BENCH_PYTHON="$root/.venv-torch/bin/python" OUT="$out" bash bench/device/run.sh)
fi
