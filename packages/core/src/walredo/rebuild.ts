// What a redo worker does with a job (walredo/worker.ts is only its thread's wiring): rebuild the
// page from the versions as stored, reading page images and logged records from the store's files.
import path from "node:path";
import { AppendFilesReader, IMAGE_FILES, RECORD_LOG_FILES } from "../storage/append-files.ts";
import { decodeValue, RUN_MEMBER_HEADER, type ValueFiles, ValueKind } from "../storage/values.ts";
import { applyStoredVersion, applyWalRecordValue } from "./apply.ts";
import { decodeReplayJob } from "./replay-job.ts";

/** stores whose files a worker keeps open */
const STORES_KEPT = 8;

interface StoreFiles extends ValueFiles {
  images: AppendFilesReader;
  recordLog: AppendFilesReader;
}

/** The page image and record log files of the stores a worker reads, the most recently used kept open. */
export class StoreFilesCache {
  private readonly stores = new Map<string, StoreFiles>();

  filesOf(storeDir: string): ValueFiles {
    let files = this.stores.get(storeDir);
    if (files) {
      this.stores.delete(storeDir);
    } else {
      const images = new AppendFilesReader(path.join(storeDir, IMAGE_FILES.dir), IMAGE_FILES.suffix);
      const recordLog = new AppendFilesReader(path.join(storeDir, RECORD_LOG_FILES.dir), RECORD_LOG_FILES.suffix);
      files = { images, recordLog, read: (ref) => images.read(ref), readRecordLog: (ref) => recordLog.read(ref) };
    }
    this.stores.set(storeDir, files);
    if (this.stores.size > STORES_KEPT) {
      const [oldestDir, oldest] = this.stores.entries().next().value!;
      this.stores.delete(oldestDir);
      oldest.images.close();
      oldest.recordLog.close();
    }
    return files;
  }
}

/** The page a replay job (encodeReplayJob's bytes) rebuilds; `files` opens the store the job names. */
export function rebuildFromJob(jobBytes: Buffer, files: (storeDir: string) => ValueFiles): Buffer {
  const job = decodeReplayJob(jobBytes);
  const valueFiles = files(job.storeDir);
  const { target, hintBitsLogged, versions } = job;
  let page = job.page;
  for (let i = 0; i < versions.length; i++) {
    const { lsn, raw } = versions[i];
    const kind = raw[0];
    // inline WAL records (the usual version) decoded in place, without the objects decodeValue makes
    if (kind === ValueKind.WalRecord) page = applyWalRecordValue(page, raw, 0, raw.length, lsn, target, hintBitsLogged);
    else if (kind === ValueKind.Run) {
      // the members in place, not through expandEntry (a buffer and an object per member):
      // [LSN u64 BE][length u32 BE][value] each (storage/values.ts runValue)
      const count = raw.readUInt16BE(1);
      let pos = 3;
      for (let m = 0; m < count; m++) {
        if (pos + RUN_MEMBER_HEADER > raw.length) throw new Error(`corrupt stored run: version ${m} of ${count} is truncated`);
        const memberLsn = raw.readBigUInt64BE(pos);
        const length = raw.readUInt32BE(pos + 8);
        const at = pos + RUN_MEMBER_HEADER;
        if (length === 0 || at + length > raw.length) throw new Error(`corrupt stored run: version ${m} of ${count} has a bad length ${length}`);
        if (raw[at] === ValueKind.WalRecord) page = applyWalRecordValue(page, raw, at, length, memberLsn, target, hintBitsLogged);
        else page = applyStoredVersion(page, decodeValue(raw.subarray(at, at + length), valueFiles), memberLsn, target, hintBitsLogged);
        pos = at + length;
      }
      if (pos !== raw.length) throw new Error(`corrupt stored run: ${raw.length - pos} trailing bytes`);
    } else page = applyStoredVersion(page, decodeValue(raw, valueFiles), lsn, target, hintBitsLogged);
  }
  return page;
}
