// Kernel programs of the fixed generators, built once per configuration per process: building a
// program records every statement's source line (a stack trace each), which dominates lowering time
// when hundreds of launches share a dozen configurations.

import type { KernelProgram } from "../tile/index.ts";

const cache = new Map<string, KernelProgram>();

export function cachedKernel<C>(generator: (config: C) => KernelProgram, config: C): KernelProgram {
  const key = `${generator.name}:${JSON.stringify(config)}`;
  let k = cache.get(key);
  if (!k) {
    k = generator(config);
    cache.set(key, k);
  }
  return k;
}
