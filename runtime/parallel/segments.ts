// Runs a graph in segments (consecutive runs of its nodes, in node order) with an async hook between
// them: where the data-parallel strategies do their communication while the step runs. On the CPU
// backend the executor is synchronous, so "overlap" means: a gradient bucket's reduction is issued
// right after the segment that finishes its last gradient, and a unit's parameters are gathered right
// before the segment that first reads them and released after the last segment that reads them.
//
// `param` and `input` nodes are leaves fed per segment: each segment that reads one gets its own copy
// of the leaf, so a parameter's full value never crosses a segment boundary (it is asked for again,
// e.g. gathered again for the backward). Any other value read by a later segment is an output of the
// segment that computes it and an input of the ones that read it, dropped after its last reader.
import { Graph, type Node } from "../../compiler/ir/index.ts";
import { type ExecuteOptions, execute, type HostTensor } from "../cpu/index.ts";

export interface Segment {
  readonly index: number;
  readonly graph: Graph;
  /** Parameters its nodes read. */
  readonly params: readonly string[];
  /** Original-graph outputs it produces. */
  readonly outputs: readonly string[];
  /** Original node ids of its first and last node. */
  readonly firstNode: number;
  readonly lastNode: number;
}

export interface SegmentedGraph {
  readonly source: Graph;
  readonly segments: readonly Segment[];
  /** Segment of each original node (-1 for the leaves, which every reader copies). */
  readonly segmentOf: Int32Array;
}

const isLeaf = (n: Node) => n.op === "param" || n.op === "input";
const boundaryName = (id: number) => `segment/%${id}`;

/** Splits `g` so that each node id in `cuts` starts a new segment (ids of leaves are ignored). */
export function splitGraph(g: Graph, cuts: Iterable<number> = []): SegmentedGraph {
  const cutSet = new Set(cuts);
  const segmentOf = new Int32Array(g.nodes.length).fill(-1);
  let current = -1;
  let pendingCut = true;
  for (const n of g.nodes) {
    if (cutSet.has(n.id)) pendingCut = true;
    if (isLeaf(n)) continue;
    if (pendingCut) {
      current++;
      pendingCut = false;
    }
    segmentOf[n.id] = current;
  }
  const count = Math.max(current + 1, 1);
  const graphs = Array.from({ length: count }, () => new Graph());
  const local = Array.from({ length: count }, () => new Map<number, number>());
  const params = Array.from({ length: count }, () => new Set<string>());
  const outputs = Array.from({ length: count }, () => [] as string[]);
  const first = new Array<number>(count).fill(-1);
  const last = new Array<number>(count).fill(-1);

  // The id of original node `id` inside segment `s`: a leaf copy, a boundary input, or its own node.
  const ref = (s: number, id: number): number => {
    const known = local[s].get(id);
    if (known !== undefined) return known;
    const n = g.nodes[id];
    let made: number;
    if (isLeaf(n)) {
      made = graphs[s].copy(n, []).id;
      if (n.op === "param") params[s].add(String(n.attrs.name));
    } else {
      made = graphs[s].add("input", [], { name: boundaryName(id), shape: [...n.shape], dtype: n.dtype }).id;
      const from = segmentOf[id];
      graphs[from].setOutput(boundaryName(id), local[from].get(id) as number);
    }
    local[s].set(id, made);
    return made;
  };
  for (const n of g.nodes) {
    const s = segmentOf[n.id];
    if (s < 0) continue;
    const inputs = n.inputs.map((i) => ref(s, i));
    local[s].set(n.id, graphs[s].copy(n, inputs).id);
    if (first[s] < 0) first[s] = n.id;
    last[s] = n.id;
  }
  for (const [name, id] of g.outputs) {
    const s = segmentOf[id] >= 0 ? segmentOf[id] : count - 1; // a leaf output: copied into the last segment
    graphs[s].setOutput(name, ref(s, id));
    outputs[s].push(name);
  }
  const segments = graphs.map((graph, index) => ({
    index,
    graph,
    params: [...params[index]],
    outputs: outputs[index],
    firstNode: first[index],
    lastNode: last[index],
  }));
  return { source: g, segments, segmentOf };
}

export interface SegmentHooks {
  /** The value of a parameter a segment reads (asked for once per reading segment). */
  param(name: string): HostTensor;
  /** Before segment s runs (gather its parameters). */
  before?(segment: Segment): Promise<void> | void;
  /** After segment s ran, with the original-graph outputs it produced (issue reductions, free). */
  after?(segment: Segment, outputs: ReadonlyMap<string, HostTensor>): Promise<void> | void;
  /** Which outputs to return at the end (default all); the others are only handed to `after`. */
  keep?(name: string): boolean;
}

/** Runs every segment in order on the CPU executor; returns the kept original-graph outputs. */
export async function runSegments(
  sg: SegmentedGraph,
  inputs: ReadonlyMap<string, HostTensor> | Record<string, HostTensor>,
  hooks: SegmentHooks,
  options: ExecuteOptions = {},
): Promise<Map<string, HostTensor>> {
  const given = inputs instanceof Map ? inputs : new Map(Object.entries(inputs));
  const lastReader = new Map<string, number>();
  for (const seg of sg.segments) {
    for (const n of seg.graph.inputs()) lastReader.set(String(n.attrs.name), seg.index);
  }
  const boundary = new Map<string, HostTensor>();
  const result = new Map<string, HostTensor>();
  const userOutputs = new Set(sg.source.outputs.keys());
  for (const seg of sg.segments) {
    await hooks.before?.(seg);
    const feedInputs = new Map<string, HostTensor>();
    for (const n of seg.graph.inputs()) {
      const name = String(n.attrs.name);
      const v = boundary.get(name) ?? given.get(name);
      if (v !== undefined) feedInputs.set(name, v); // a missing user input is reported by the executor
    }
    const feedParams = new Map<string, HostTensor>();
    for (const name of seg.params) feedParams.set(name, hooks.param(name));
    const { outputs } = execute(seg.graph, { inputs: feedInputs, params: feedParams }, options);
    const produced = new Map<string, HostTensor>();
    for (const [name, v] of outputs) {
      if (userOutputs.has(name)) produced.set(name, v);
      else boundary.set(name, v);
    }
    for (const [name, last] of lastReader) if (last === seg.index && boundary.delete(name)) lastReader.delete(name);
    for (const [name, v] of produced) if (hooks.keep?.(name) ?? true) result.set(name, v);
    await hooks.after?.(seg, produced);
    // Let the network make progress (reductions issued so far complete) before the next segment.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return result;
}
