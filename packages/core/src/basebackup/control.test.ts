import { describe, expect, it } from "vitest";
import { CHECKPOINT_SIZE, CheckPointField } from "../ingest/records.ts";
import type { Lsn } from "../lsn.ts";
import { crc32c } from "../wal/crc32c.ts";
import { WalStreamDecoder, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER } from "../wal/reader.ts";
import { WalDecodeError } from "../wal/errors.ts";
import { decodeRecord, type DecodedRecord } from "../wal/record.ts";
import {
  buildControlFile, CHECKPOINT_RECORD_SIZE, checkpointRecord, checkpointRecordLsn, checkpointWal, ControlField, DB_SHUTDOWNED,
  PG_CONTROL_FILE_SIZE, PG_CONTROL_VERSION, readControlFile, shutdownCheckpoint, withParameterChange,
} from "./control.ts";

const SEG = 16 * 1024 * 1024;
const SYSID = 7312345678901234567n;

function trackedCheckpoint(): Buffer {
  const cp = Buffer.alloc(CHECKPOINT_SIZE, 0xaa); // garbage in the padding must not survive
  cp.writeBigUInt64LE(0n, CheckPointField.redo);
  cp.writeUInt32LE(1, CheckPointField.thisTimeLineID);
  cp.writeUInt32LE(7, 12);
  cp[16] = 1;
  cp.writeBigUInt64LE((1n << 32n) | 5000n, CheckPointField.nextXid);
  cp.writeUInt32LE(24576, CheckPointField.nextOid);
  cp.writeUInt32LE(3, CheckPointField.nextMulti);
  cp.writeUInt32LE(9, CheckPointField.nextMultiOffset);
  cp.writeUInt32LE(716, CheckPointField.oldestXid);
  cp.writeUInt32LE(1, CheckPointField.oldestXidDB);
  cp.writeUInt32LE(1, CheckPointField.oldestMulti);
  cp.writeUInt32LE(1, CheckPointField.oldestMultiDB);
  cp.writeUInt32LE(4000, CheckPointField.oldestCommitTsXid);
  cp.writeUInt32LE(4900, CheckPointField.newestCommitTsXid);
  cp.writeUInt32LE(4990, CheckPointField.oldestActiveXid);
  return cp;
}

function importedControl(): Buffer {
  const c = Buffer.alloc(PG_CONTROL_FILE_SIZE);
  c.writeBigUInt64LE(SYSID, ControlField.systemIdentifier);
  c.writeUInt32LE(PG_CONTROL_VERSION, ControlField.pgControlVersion);
  c.writeUInt32LE(202209061, ControlField.catalogVersionNo);
  c.writeUInt32LE(6, ControlField.state); // in production
  c.writeBigUInt64LE(0x3000060n, ControlField.minRecoveryPoint);
  c.writeBigUInt64LE(0x3000028n, ControlField.backupStartPoint);
  c[ControlField.backupEndRequired] = 1;
  c.writeInt32LE(1, ControlField.walLevel);
  c.writeInt32LE(100, ControlField.maxConnections);
  c.writeInt32LE(5, ControlField.maxPreparedXacts);
  c.writeUInt32LE(8192, ControlField.blcksz);
  c.writeUInt32LE(131072, ControlField.relsegSize);
  c.writeUInt32LE(8192, ControlField.xlogBlcksz);
  c.writeUInt32LE(SEG, ControlField.xlogSegSize);
  c.writeUInt32LE(1, ControlField.dataChecksumVersion);
  c.writeUInt32LE(crc32c(c, 0, ControlField.crc), ControlField.crc);
  return c;
}

function concat(chunks: Iterable<Buffer>): Buffer {
  return Buffer.concat([...chunks]);
}

/** Decodes the synthesized WAL from the first segment's start, as a reader with no context would. */
function decodeFromSegmentStart(lsn: Lsn) {
  const recLsn = checkpointRecordLsn(lsn, SEG);
  const cp = shutdownCheckpoint(trackedCheckpoint(), recLsn, new Date(1_700_000_000_000));
  const wal = checkpointWal(checkpointRecord(cp, 0x1000000n), recLsn, { systemId: SYSID, timeline: 1, segmentSize: SEG });
  const decoder = new WalStreamDecoder(wal.segments[0].startLsn, { systemId: SYSID });
  for (const segment of wal.segments) decoder.feed(concat(segment.chunks()));
  // the WAL ends right after the record: the next "record" is zeros
  const records: DecodedRecord[] = [];
  let endOfWal: WalDecodeError | undefined;
  try {
    for (const r of decoder.drain()) records.push(r);
  } catch (err) {
    if (!(err instanceof WalDecodeError) || err.code !== "ZERO_LENGTH") throw err;
    endOfWal = err;
  }
  expect(endOfWal?.lsn).toBe(wal.endLsn);
  return { wal, records, files: wal.segments.map((s) => concat(s.chunks())) };
}

describe("shutdown checkpoint synthesis", () => {
  it("builds a CheckPoint with redo at the record, invalid oldestActiveXid and commit-ts bounds, and zeroed padding", () => {
    const cp = shutdownCheckpoint(trackedCheckpoint(), 0x4766820n, new Date(1_700_000_000_000));
    expect(cp.readBigUInt64LE(CheckPointField.redo)).toBe(0x4766820n);
    expect(cp.readUInt32LE(12)).toBe(1); // PrevTimeLineID = ThisTimeLineID
    expect(cp.subarray(17, 24).every((b) => b === 0)).toBe(true);
    expect(cp.readBigUInt64LE(CheckPointField.nextXid)).toBe((1n << 32n) | 5000n);
    expect(cp.readUInt32LE(CheckPointField.nextOid)).toBe(24576);
    expect(cp.readBigInt64LE(CheckPointField.time)).toBe(1_700_000_000n);
    expect(cp.readUInt32LE(CheckPointField.oldestCommitTsXid)).toBe(0);
    expect(cp.readUInt32LE(CheckPointField.oldestActiveXid)).toBe(0);
    expect(cp.subarray(84).every((b) => b === 0)).toBe(true);
  });

  it("writes a 114-byte XLOG/CHECKPOINT_SHUTDOWN record whose CRC PostgreSQL's algorithm accepts", () => {
    const cp = shutdownCheckpoint(trackedCheckpoint(), 0x4766820n, new Date());
    const rec = checkpointRecord(cp, 0x47667d8n);
    expect(rec.length).toBe(CHECKPOINT_RECORD_SIZE);
    const decoded = decodeRecord(rec, 0x4766820n, { verifyCrc: true });
    expect(decoded.rmid).toBe(0);
    expect(decoded.info & 0xf0).toBe(0);
    expect(decoded.prev).toBe(0x47667d8n);
    expect(decoded.mainData.equals(cp)).toBe(true);
  });

  it("rewrites pg_control as cleanly shut down at the checkpoint, keeping identity and settings, with a valid CRC", () => {
    const imported = importedControl();
    const cp = shutdownCheckpoint(trackedCheckpoint(), 0x4766820n, new Date());
    const control = buildControlFile(imported, cp, 0x4766820n, new Date(1_700_000_000_000));
    expect(control.length).toBe(PG_CONTROL_FILE_SIZE);
    expect(control.readUInt32LE(ControlField.crc)).toBe(crc32c(control, 0, ControlField.crc));
    expect(control.readUInt32LE(ControlField.state)).toBe(DB_SHUTDOWNED);
    expect(control.readBigUInt64LE(ControlField.checkPoint)).toBe(0x4766820n);
    expect(control.subarray(ControlField.checkPointCopy, ControlField.checkPointCopy + CHECKPOINT_SIZE).equals(cp)).toBe(true);
    expect(control.readBigUInt64LE(ControlField.minRecoveryPoint)).toBe(0n);
    expect(control.readBigUInt64LE(ControlField.backupStartPoint)).toBe(0n);
    expect(control[ControlField.backupEndRequired]).toBe(0);
    expect(control.subarray(ControlField.crc + 4).every((b) => b === 0)).toBe(true);
    const settings = readControlFile(control);
    expect(settings).toMatchObject({ systemId: SYSID, walLevel: 1, maxConnections: 100, maxPreparedXacts: 5, dataChecksumVersion: 1, segmentSize: SEG });
  });

  it("keeps commit timestamp bounds when the backup has pg_commit_ts", () => {
    const cp = shutdownCheckpoint(trackedCheckpoint(), 0x4766820n, new Date(), { oldest: 4000, newest: 5119 });
    expect([cp.readUInt32LE(CheckPointField.oldestCommitTsXid), cp.readUInt32LE(CheckPointField.newestCommitTsXid)]).toEqual([4000, 5119]);
  });

  it("takes the settings of an XLOG_PARAMETER_CHANGE into pg_control, with a valid CRC", () => {
    const xlrec = Buffer.alloc(28);
    [120, 9, 12, 10, 128, 2].forEach((v, i) => xlrec.writeInt32LE(v, 4 * i));
    xlrec[24] = 1; // wal_log_hints
    xlrec[25] = 1; // track_commit_timestamp
    const control = withParameterChange(importedControl(), xlrec);
    expect(readControlFile(control)).toMatchObject({
      maxConnections: 120, maxWorkerProcesses: 9, maxWalSenders: 12, maxPreparedXacts: 10, maxLocksPerXact: 128, walLevel: 2, walLogHints: true, trackCommitTimestamp: true,
      systemId: SYSID, segmentSize: SEG,
    });
    // the rest is the source's as it was
    expect(control.subarray(0, ControlField.walLevel)).toEqual(importedControl().subarray(0, ControlField.walLevel));
  });

  it("refuses a corrupt or foreign pg_control", () => {
    const bad = importedControl();
    bad[100] ^= 1;
    expect(() => readControlFile(bad)).toThrow(/CRC mismatch/);
    const old = importedControl();
    old.writeUInt32LE(1201, ControlField.pgControlVersion);
    old.writeUInt32LE(crc32c(old, 0, ControlField.crc), ControlField.crc);
    expect(() => readControlFile(old)).toThrow(/version 1201/);
  });

  it("rejects backup LSNs that are not 8-byte aligned, and moves a page-boundary LSN past the page header", () => {
    expect(() => checkpointRecordLsn(0x4766824n, SEG)).toThrow(/not 8-byte aligned/);
    expect(checkpointRecordLsn(0x4766820n, SEG)).toBe(0x4766820n);
    expect(checkpointRecordLsn(0x4768000n, SEG)).toBe(0x4768018n);
    expect(checkpointRecordLsn(0x5000000n, SEG)).toBe(0x5000028n);
  });
});

describe("synthesized WAL segment", () => {
  it("holds the record mid-page behind continuation headers that a reader from the segment start skips", () => {
    const { wal, records, files } = decodeFromSegmentStart(0x4766820n);
    expect(wal.segments.map((s) => s.name)).toEqual(["000000010000000000000004"]);
    expect(files[0].length).toBe(SEG);
    expect(records.map((r) => [r.lsn, r.endLsn])).toEqual([[0x4766820n, 0x4766898n]]);
    expect(wal.endLsn).toBe(0x4766898n);
    // page 0: long header, sysid, continuation up to the record minus the headers of pages 0..947
    const f = files[0];
    expect(f.readUInt16LE(0)).toBe(0xd110);
    expect(f.readUInt16LE(2)).toBe(XLP_LONG_HEADER | XLP_FIRST_IS_CONTRECORD);
    expect(f.readBigUInt64LE(8)).toBe(0x4000000n);
    expect(f.readUInt32LE(16)).toBe(0x766820 - 40 - (0x766000 / 8192) * 24);
    expect(f.readBigUInt64LE(24)).toBe(SYSID);
    expect(f.readUInt32LE(32)).toBe(SEG);
    // the record's page: rem_len = bytes between the header and the record
    const page = 0x766000;
    expect(f.readUInt16LE(page + 2)).toBe(XLP_FIRST_IS_CONTRECORD);
    expect(f.readBigUInt64LE(page + 8)).toBe(0x4766000n);
    expect(f.readUInt32LE(page + 16)).toBe(0x820 - 24);
    // nothing after the record
    expect(f.subarray(0x766898).every((b) => b === 0)).toBe(true);
  });

  it("starts the record right after the header when the LSN is a page boundary (no continuation flag there)", () => {
    const { records, files } = decodeFromSegmentStart(0x4768000n);
    expect(records.map((r) => r.lsn)).toEqual([0x4768018n]);
    expect(files[0].readUInt16LE(0x768000 + 2)).toBe(0);
    expect(files[0].readUInt32LE(0x766000 + 16)).toBe(8192 - 24); // previous page: continuation fills it
  });

  it("puts the record on page 0 of a segment after the long header", () => {
    const { wal, records, files } = decodeFromSegmentStart(0x5000000n);
    expect(wal.segments.map((s) => s.name)).toEqual(["000000010000000000000005"]);
    expect(records.map((r) => r.lsn)).toEqual([0x5000028n]);
    expect(files[0].readUInt16LE(2)).toBe(XLP_LONG_HEADER);
  });

  it("continues a record that crosses a page boundary on the next page with the remaining length", () => {
    const { wal, records, files } = decodeFromSegmentStart(0x4767fd0n); // 48 bytes left on the page
    expect(records.map((r) => [r.lsn, r.endLsn])).toEqual([[0x4767fd0n, 0x4768018n + 72n]]);
    expect(wal.endLsn).toBe(0x4768060n);
    expect(files[0].readUInt16LE(0x768000 + 2)).toBe(XLP_FIRST_IS_CONTRECORD);
    expect(files[0].readUInt32LE(0x768000 + 16)).toBe(CHECKPOINT_RECORD_SIZE - 48);
  });

  it("writes the next segment too when the record crosses into it", () => {
    const { wal, records, files } = decodeFromSegmentStart(0x4fffff0n); // 16 bytes left in the segment
    expect(wal.segments.map((s) => s.name)).toEqual(["000000010000000000000004", "000000010000000000000005"]);
    expect(records.map((r) => r.lsn)).toEqual([0x4fffff0n]);
    expect(wal.endLsn).toBe(0x5000028n + 104n);
    const next = files[1];
    expect(next.readUInt16LE(2)).toBe(XLP_LONG_HEADER | XLP_FIRST_IS_CONTRECORD);
    expect(next.readUInt32LE(16)).toBe(CHECKPOINT_RECORD_SIZE - 16);
    expect(next.readBigUInt64LE(24)).toBe(SYSID);
  });
});
