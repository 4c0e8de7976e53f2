// The state of one lowering: numbered buffers (graph values, views, constants, scratch), the kernel
// modules, and the launch list. Rules (rules/*.ts) call these helpers; lower.ts drives them.

import { renderPtx } from "../codegen/render.ts";
import { formatLoc, type Graph, type Node, numel, type Shape, UserError } from "../ir/index.ts";
import type { DType } from "../ir/types.ts";
import { type KernelProgram, launchGrid } from "../tile/index.ts";
import type { Analysis } from "./analysis.ts";
import type { NamedKernel } from "./naming.ts";
import { type BufferRole, deviceBytes, type KernelLaunch, type LaunchArg, type PlanModule } from "./plan.ts";

export interface DraftBuffer {
  id: number;
  bytes: number;
  dtype: DType;
  shape: Shape;
  role: BufferRole;
  name?: string;
  data?: Float32Array | Int32Array;
  aliasOf?: { buffer: number; offsetBytes: number };
}

/** A pointer argument: a buffer and an element offset into it. */
export interface BufferArg {
  readonly buffer: number;
  readonly offset?: number;
}

export type KernelArgs = Readonly<Record<string, BufferArg | number>>;

export interface LaunchOptions {
  /** Pointer params the kernel writes (the rest are read). */
  readonly writes: readonly string[];
  /** Graph nodes this launch computes (for the label and the plan's `nodes`). */
  readonly nodes: readonly number[];
  /** What the launch does, when not the node's op ("im2col", "bias", ...). */
  readonly what?: string;
  /** Pointer params the kernel does not touch in this configuration (neither read nor written). */
  readonly unused?: readonly string[];
  /** The whole label, for launches no graph node describes (a plan built without a graph). */
  readonly label?: string;
}

export class LowerContext {
  readonly buffers: DraftBuffer[] = [];
  readonly launches: KernelLaunch[] = [];
  readonly modules: PlanModule[] = [];
  readonly programs: KernelProgram[] = [];
  private readonly moduleIndex = new Map<string, number>();
  /** Graph node id -> the buffer holding its value. */
  readonly valueBuffer = new Map<number, number>();
  readonly inputs: Record<string, number> = {};
  readonly params: Record<string, number> = {};
  readonly outputs: Record<string, number> = {};
  /** The run's seed (dropout / dropPath streams), created on first use. */
  seedBuffer: number | undefined;
  /** Packs by name (pack.ts): the owner buffer and each member's element offset. */
  readonly packs: Record<string, { buffer: number; offsets: Record<string, number> }> = {};
  /** Round bf16 intermediates of fused elementwise ops as the unfused graph stores them (LowerOptions). */
  roundBf16 = true;
  /** Node id -> where define() places its value: a view of a pack owner at an element offset. */
  readonly placeAt = new Map<number, { owner: number; offset: number }>();

  constructor(
    readonly graph: Graph,
    readonly analysis: Analysis,
  ) {}

  // ---- buffers ---------------------------------------------------------------------------------

  newBuffer(shape: Shape, dtype: DType, role: BufferRole = "temp", extra: Partial<DraftBuffer> = {}): number {
    const id = this.buffers.length;
    this.buffers.push({ id, bytes: Math.max(1, numel(shape)) * deviceBytes(dtype), dtype, shape: [...shape], role, ...extra });
    return id;
  }

  /** A view of `owner` (or of the buffer it views) at an element offset. */
  alias(owner: number, shape: Shape, dtype: DType, offsetElements = 0): number {
    const o = this.buffers[owner];
    const root = o.aliasOf ? o.aliasOf.buffer : owner;
    const offsetBytes = (o.aliasOf?.offsetBytes ?? 0) + offsetElements * deviceBytes(dtype);
    return this.newBuffer(shape, dtype, "temp", { aliasOf: { buffer: root, offsetBytes } });
  }

  constBuffer(shape: Shape, dtype: DType, data: Float32Array | Int32Array): number {
    return this.newBuffer(shape, dtype, "const", { data });
  }

  /** The buffer a node's value lives in (it must have been materialised). */
  bufferOf(id: number): number {
    const b = this.valueBuffer.get(id);
    if (b === undefined) throw new Error(`lower: %${id} (${this.graph.node(id).op}) has no buffer`);
    return b;
  }

  /** Element offset of a buffer inside its storage (0 for owners). */
  elementOffset(buffer: number): number {
    const b = this.buffers[buffer];
    return b.aliasOf ? b.aliasOf.offsetBytes / deviceBytes(b.dtype) : 0;
  }

  /** The largest of `choices` (elements) dividing the buffer's offset; owners are 256-byte aligned. */
  alignment(buffer: number, choices: readonly number[] = [8, 4, 2, 1]): number {
    const off = this.elementOffset(buffer);
    return choices.find((c) => off % c === 0) ?? 1;
  }

  /** A fresh buffer for a node's value (the lowering of that node writes it), or its place in a pack. */
  define(node: Node): number {
    const at = this.placeAt.get(node.id);
    const id = at ? this.alias(at.owner, node.shape, node.dtype, at.offset) : this.newBuffer(node.shape, node.dtype);
    this.valueBuffer.set(node.id, id);
    return id;
  }

  /** The storage root of a buffer and its element offset there. */
  rootOf(buffer: number): { root: number; offset: number } {
    const b = this.buffers[buffer];
    return { root: b.aliasOf ? b.aliasOf.buffer : buffer, offset: this.elementOffset(buffer) };
  }

  seed(): number {
    if (this.seedBuffer === undefined) this.seedBuffer = this.newBuffer([], "i32", "input", { name: "$seed" });
    return this.seedBuffer;
  }

  // ---- kernels and launches --------------------------------------------------------------------

  /** Registers a kernel (once per name) and returns its module index. */
  kernel(k: KernelProgram | NamedKernel): { program: KernelProgram; module: number } {
    const program = "program" in k ? k.program : k;
    const known = this.moduleIndex.get(program.name);
    if (known !== undefined) return { program: this.programs[known], module: known };
    const ptx = "ptx" in k ? k.ptx : renderPtx(program);
    const index = this.modules.length;
    this.modules.push({ name: program.name, ptx });
    this.programs.push(program);
    this.moduleIndex.set(program.name, index);
    return { program, module: index };
  }

  launch(k: KernelProgram | NamedKernel, args: KernelArgs, o: LaunchOptions): void {
    const { program, module } = this.kernel(k);
    const launchArgs: LaunchArg[] = [];
    const scalars: Record<string, number> = {};
    const reads: number[] = [];
    const writes: number[] = [];
    for (const p of program.params) {
      const a = args[p.name];
      if (a === undefined) throw new Error(`lower: kernel ${program.name} needs an argument for ${p.name}`);
      if (p.kind === "scalar") {
        if (typeof a !== "number") throw new Error(`lower: kernel ${program.name}: ${p.name} is a scalar`);
        if (p.type !== "f32" && !Number.isInteger(a)) throw new Error(`lower: kernel ${program.name}: ${p.name} = ${a}`);
        scalars[p.name] = a;
        launchArgs.push({ kind: p.type, value: a });
        continue;
      }
      if (typeof a === "number") throw new Error(`lower: kernel ${program.name}: ${p.name} is a pointer`);
      const b = this.buffers[a.buffer];
      const offsetBytes = (a.offset ?? 0) * deviceBytes(b.dtype);
      launchArgs.push(offsetBytes ? { kind: "buffer", buffer: a.buffer, offsetBytes } : { kind: "buffer", buffer: a.buffer });
      if (!o.unused?.includes(p.name)) (o.writes.includes(p.name) ? writes : reads).push(a.buffer);
    }
    const grid = launchGrid(program, scalars);
    if (grid.some((d) => d < 1)) throw new Error(`lower: kernel ${program.name}: empty grid ${grid.join("x")}`);
    this.launches.push({
      module,
      kernel: program.name,
      grid,
      block: [program.warps * 32, 1, 1],
      dynamicSharedBytes: 0,
      args: launchArgs,
      reads: [...new Set(reads)],
      writes: [...new Set(writes)],
      label: this.label(o),
      nodes: [...o.nodes],
    });
  }

  private label(o: LaunchOptions): string {
    if (o.label !== undefined) return o.label;
    const last = this.graph.node(o.nodes[o.nodes.length - 1]);
    const ops = o.what ?? [...new Set(o.nodes.map((id) => this.graph.node(id).op))].join("+");
    const where = last.loc ? ` (${formatLoc(last.loc)})` : "";
    return `${ops} %${last.id}${last.scope ? ` @ ${last.scope}` : ""}${where}`;
  }

  /** A lowering this op (or this configuration of it) does not have: a build error at the user's line. */
  unsupported(node: Node, why = ""): never {
    throw new UserError(
      `no sm_80 kernel for op '${node.op}'${why ? ` (${why})` : ""}: ${node.dtype}[${node.shape.join(",")}]`,
      node.loc ? formatLoc(node.loc) : `%${node.id}`,
    );
  }
}
