#!/usr/bin/env bash
# Runs test/lower/gpu.test.ts (the lowered xxs plans on a GPU) on a lent GPU machine, in one go:
# carry .gpu-node and build (see test/gpu/cuda-device-check.sh); the log goes to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp}
if ! command -v node >/dev/null; then
  xz -dc .gpu-node/node.xz >/tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
fi
[ -d node_modules/vitest ] || tar -xJf .gpu-node/nm.tar.xz
nvidia-smi -L || true
node node_modules/vitest/vitest.mjs run test/lower/gpu.test.ts --typecheck.enabled=false --reporter=verbose 2>&1 | tee "$out/lower-gpu.log"
