// A data worker thread: reopens the source from its spec, then reads, decodes and augments the
// samples it is sent, one message per sample, transferring the pixel buffers back.

import { parentPort, workerData } from "node:worker_threads";
import { sourceFromSpec } from "./open.ts";
import { type PipelineOptions, processSample } from "./pipeline.ts";
import type { SourceSpec } from "./source.ts";

export interface SampleRequest {
  readonly id: number;
  readonly index: number;
  readonly key: number;
}

export type SampleReply =
  | {
      readonly id: number;
      readonly ok: true;
      readonly key: string;
      readonly image: Float32Array;
      readonly classId?: number;
      readonly labels?: Uint8Array;
    }
  | { readonly id: number; readonly ok: false; readonly key: string; readonly reason: string };

/** Reads and processes one sample; a failure becomes a reply, never an exception. */
export async function handleRequest(
  source: ReturnType<typeof sourceFromSpec>,
  options: PipelineOptions,
  req: SampleRequest,
): Promise<SampleReply> {
  let key = `#${req.index}`;
  try {
    const raw = await source.read(req.index);
    key = raw.key;
    const s = await processSample(raw, options, req.key);
    return { id: req.id, ok: true, key, image: s.image, classId: s.classId, labels: s.labels };
  } catch (e) {
    return { id: req.id, ok: false, key, reason: e instanceof Error ? e.message.split("\n")[0] : String(e) };
  }
}

if (parentPort && workerData?.role === "ptc-data-worker") {
  const port = parentPort;
  const { spec, options } = workerData as { spec: SourceSpec; options: PipelineOptions };
  const source = sourceFromSpec(spec);
  port.on("message", async (req: SampleRequest) => {
    const reply = await handleRequest(source, options, req);
    const transfer = reply.ok ? [reply.image.buffer, ...(reply.labels ? [reply.labels.buffer] : [])] : [];
    port.postMessage(reply, transfer as ArrayBuffer[]);
  });
  port.postMessage({ ready: true });
}
