// Names of generated kernels. A generator whose program depends on the graph (an elementwise region,
// a gather chain, a const table) gets a name derived from its PTX, so equal programs share one
// module and different ones never collide, and the name stays stable from build to build.

import { createHash } from "node:crypto";
import { renderPtx } from "../codegen/render.ts";
import type { KernelProgram } from "../tile/index.ts";

const PLACEHOLDER = "ptc_generated_kernel";

export interface NamedKernel {
  readonly program: KernelProgram;
  readonly ptx: string;
}

/**
 * Builds the kernel with a placeholder name, hashes its PTX and renames it `<prefix>_<hash>`.
 * `build` receives the name to give defineKernel.
 */
export function contentNamed(prefix: string, build: (name: string) => KernelProgram): NamedKernel {
  const draft = build(PLACEHOLDER);
  const text = renderPtx(draft);
  const hash = createHash("sha1").update(text).digest("hex").slice(0, 12);
  const name = `${prefix}_${hash}`;
  return { program: { ...draft, name }, ptx: text.split(PLACEHOLDER).join(name) };
}
