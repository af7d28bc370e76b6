// A redo worker thread (walredo/pool.ts starts it through worker-entry.mjs): rebuilds the pages
// of the replay jobs it is sent and sends each page back. It reads the stored references (WAL
// records in the record log, page images) from the store's files itself. A job that fails is
// only reported: the main thread replays it again itself, which throws the error with its type
// and details.
import path from "node:path";
import { parentPort } from "node:worker_threads";
import { BLCKSZ } from "../reltag.ts";
import { AppendFilesReader, IMAGE_FILES, RECORD_LOG_FILES } from "../storage/append-files.ts";
import { decodeValue, expandEntry, type ValueFiles, ValueKind } from "../storage/values.ts";
import { applyStoredVersion } from "./apply.ts";
import { decodeReplayJob } from "./replay-job.ts";

export interface JobRequest {
  id: number;
  job: ArrayBuffer;
}

export type JobReply = { id: number; page: ArrayBuffer } | { id: number; error: string };

/** stores whose files a worker keeps open */
const STORES_KEPT = 8;

interface StoreFiles extends ValueFiles {
  images: AppendFilesReader;
  recordLog: AppendFilesReader;
}

const stores = new Map<string, StoreFiles>();

function filesOf(storeDir: string): StoreFiles {
  let files = stores.get(storeDir);
  if (files) {
    stores.delete(storeDir);
  } else {
    const images = new AppendFilesReader(path.join(storeDir, IMAGE_FILES.dir), IMAGE_FILES.suffix);
    const recordLog = new AppendFilesReader(path.join(storeDir, RECORD_LOG_FILES.dir), RECORD_LOG_FILES.suffix);
    files = { images, recordLog, read: (ref) => images.read(ref), readRecordLog: (ref) => recordLog.read(ref) };
  }
  stores.set(storeDir, files);
  if (stores.size > STORES_KEPT) {
    const [oldestDir, oldest] = stores.entries().next().value!;
    stores.delete(oldestDir);
    oldest.images.close();
    oldest.recordLog.close();
  }
  return files;
}

function rebuild(jobBytes: Buffer): Buffer {
  const job = decodeReplayJob(jobBytes);
  const files = filesOf(job.storeDir);
  let page = job.page;
  const versions = job.versions;
  for (let i = 0; i < versions.length; i++) {
    const { lsn, raw } = versions[i];
    if (raw[0] === ValueKind.Run) for (const member of expandEntry(lsn, raw)) page = applyStoredVersion(page, decodeValue(member.raw, files), member.lsn, job.target, job.hintBitsLogged);
    else page = applyStoredVersion(page, decodeValue(raw, files), lsn, job.target, job.hintBitsLogged);
  }
  return page;
}

const port = parentPort;
if (!port) throw new Error("walredo/worker.ts runs as a worker thread");

port.on("message", ({ id, job }: JobRequest) => {
  let reply: JobReply;
  let transfer: ArrayBuffer[] = [];
  try {
    const page = rebuild(Buffer.from(job));
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
