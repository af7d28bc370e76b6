// A redo worker thread (walredo/pool.ts starts it through worker-entry.mjs): rebuilds the pages
// of the replay jobs it is sent (walredo/rebuild.ts) and sends each page back. A job that fails
// is only reported: the main thread replays it again itself, which throws the error with its type
// and details.
import { parentPort } from "node:worker_threads";
import { BLCKSZ } from "../reltag.ts";
import { rebuildFromJob, StoreFilesCache } from "./rebuild.ts";

export interface JobRequest {
  id: number;
  job: ArrayBuffer;
}

export type JobReply = { id: number; page: ArrayBuffer } | { id: number; error: string };

const port = parentPort;
if (!port) throw new Error("walredo/worker.ts runs as a worker thread");

const stores = new StoreFilesCache();
const filesOf = (storeDir: string) => stores.filesOf(storeDir);

port.on("message", ({ id, job }: JobRequest) => {
  let reply: JobReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const page = rebuildFromJob(Buffer.from(job), filesOf);
    const out = new ArrayBuffer(BLCKSZ);
    new Uint8Array(out).set(page);
    reply = { id, page: out };
    transfer = [out];
  } catch (err) {
    reply = { id, error: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply, transfer);
});
port.postMessage({ ready: true });
