import { describe, expect, it } from "vitest";
import { ForkNumber } from "../reltag.ts";
import { runValue, walRecordValue, TOMBSTONE } from "../storage/values.ts";
import { decodeReplayJob, encodeReplayJob, type ReplayJob } from "./replay-job.ts";

describe("replay jobs", () => {
  const job: ReplayJob = {
    storeDir: "/tmp/störe dir/timeline",
    page: Buffer.alloc(8192, 7),
    versions: [
      { lsn: 0x1_0000_0100n, raw: TOMBSTONE },
      { lsn: 0xffff_ffff_0000_0200n, raw: walRecordValue(Buffer.from("a record"), 0xffff_ffff_0000_01f0n, true) },
      { lsn: 0x1_0000_0300n, raw: runValue([{ lsn: 0x1_0000_0300n, value: Buffer.from([2, 0, 1]) }, { lsn: 0x1_0000_0310n, value: Buffer.from([2, 0, 2]) }]) },
    ],
    target: { rel: { spcNode: 1663, dbNode: 0xffff_fff0, relNode: 16384 }, fork: ForkNumber.VisibilityMap, blockNumber: 0xffff_fffe },
    hintBitsLogged: true,
  };

  it("carry the store, the start page, the block and every stored version through one buffer of their own", () => {
    const encoded = encodeReplayJob(job);
    // transferable whole: not a slice of Node's shared buffer pool
    expect(encoded.byteOffset).toBe(0);
    expect(encoded.buffer.byteLength).toBe(encoded.length);
    const decoded = decodeReplayJob(Buffer.from(encoded.buffer));
    expect(decoded.storeDir).toBe(job.storeDir);
    expect(decoded.page).toEqual(job.page);
    expect(decoded.target).toEqual(job.target);
    expect(decoded.hintBitsLogged).toBe(true);
    expect(decoded.versions).toEqual(job.versions);
    expect(decodeReplayJob(encodeReplayJob({ ...job, hintBitsLogged: false, versions: [] })).hintBitsLogged).toBe(false);
  });

  it("are copies: changing the job's buffers afterwards changes nothing in it", () => {
    const page = Buffer.alloc(8192);
    const raw = walRecordValue(Buffer.from("xyz"), 0x10n, false);
    const encoded = encodeReplayJob({ ...job, page, versions: [{ lsn: 0x20n, raw }] });
    page.fill(9);
    raw.fill(9);
    const decoded = decodeReplayJob(encoded);
    expect(decoded.page).toEqual(Buffer.alloc(8192));
    expect(decoded.versions[0].raw).toEqual(walRecordValue(Buffer.from("xyz"), 0x10n, false));
  });

  it("refuse a truncated or padded buffer and a start page that is not a page", () => {
    const encoded = encodeReplayJob(job);
    expect(() => decodeReplayJob(encoded.subarray(0, encoded.length - 1))).toThrow(/version 2 of 3/);
    expect(() => decodeReplayJob(Buffer.concat([encoded, Buffer.alloc(1)]))).toThrow(/1 trailing bytes/);
    expect(() => decodeReplayJob(encoded.subarray(0, 100))).toThrow(/truncated/);
    expect(() => encodeReplayJob({ ...job, page: Buffer.alloc(100) })).toThrow(/8192-byte page/);
  });
});
