#!/usr/bin/env bash
# Runs runtime/cuda's GPU tests (test/gpu) on a GPU machine, in one go. Such a machine may have no
# Node and no network: .gpu-node/ then brings them (node.xz from ../shared/tools/device-carry-node.sh,
# and nm.tar.xz, a tarball of node_modules without @biomejs/typescript/dependency-cruiser); the
# addon in build/Release comes along too (see runtime/cuda/README.md).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp}
if ! command -v node >/dev/null; then
  xz -dc .gpu-node/node.xz >/tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH
fi
[ -d node_modules/vitest ] || tar -xJf .gpu-node/nm.tar.xz
if [ -z "${PTC_NCCL_LIBRARY:-}" ]; then
  lib=$(find /opt /usr -name libnccl.so.2 -print -quit 2>/dev/null)
  [ -n "$lib" ] && export PTC_NCCL_LIBRARY=$lib
fi
nvidia-smi -L || true
echo "PTC_NCCL_LIBRARY=${PTC_NCCL_LIBRARY:-}"
node -e 'const a = require("./build/Release/ptc_cuda.node"); console.log(a.probe()); if (process.env.PTC_NCCL_LIBRARY) console.log(a.ncclLoad(process.env.PTC_NCCL_LIBRARY))'
NCCL_DEBUG=${NCCL_DEBUG:-WARN} node node_modules/vitest/vitest.mjs run test/gpu --typecheck.enabled=false --reporter=verbose 2>&1 |
  tee "$out/cuda-gpu-tests.log"
