// Decodes the WAL of a real pgbench run and compares it with pg_waldump record by record; also
// checks incremental feeding in random chunk sizes and starting at a page with a continuation.
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { formatLsn, type Lsn } from "../lsn.ts";
import { PgCluster } from "../testing/pgcluster.ts";
import { readFileSync } from "node:fs";
import path from "node:path";
import { WalDecodeError } from "./errors.ts";
import { readWalSegments, walFileName, WalStreamDecoder } from "./reader.ts";
import type { DecodedRecord } from "./record.ts";
import { captureWal, compareWithPgWaldump } from "./testutil.ts";
import { formatRecordLine, parsePgWaldumpLine, toWaldumpEntry, type WaldumpEntry } from "./waldump.ts";

const SEG = 16n * 1024n * 1024n;

describe("WAL of pgbench -i -s 1 and pgbench -t 200 -c 2", () => {
  let cluster: PgCluster;
  let start: Lsn;
  let end: Lsn;
  let records: DecodedRecord[];
  let theirs: WaldumpEntry[];
  let diffs: string[];

  beforeAll(async () => {
    cluster = await PgCluster.start({ settings: { wal_keep_size: "512MB" } });
    try {
      await cluster.sql("CHECKPOINT");
      ({ start, end } = await captureWal(cluster, async () => {
        await cluster.pgbench(["-i", "-s", "1", "-q"]);
        await cluster.pgbench(["-t", "200", "-c", "2", "-n"]);
      }));
      ({ records, theirs, diffs } = await compareWithPgWaldump(cluster, start, end));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  test("every record matches pg_waldump -b (lsn, rmgr, lengths, xid, prev, type, block refs, images)", () => {
    expect(diffs).toEqual([]);
    expect(records.length).toBeGreaterThan(5_000);
    expect(records.length).toBe(theirs.length);
    const types = new Set(theirs.map((e) => `${e.rmgr}/${e.type}`));
    // the -b image details were parsed and compared too
    expect(theirs.some((e) => e.blocks.some((b) => b.image?.holeLength !== undefined && b.image.holeLength > 0))).toBe(true);
    for (const t of ["Heap2/MULTI_INSERT+INIT", "Heap/HOT_UPDATE", "Btree/INSERT_LEAF", "Transaction/COMMIT", "XLOG/FPI"]) expect(types).toContain(t);
  });

  test("records spanning pages and a 16 MiB segment boundary are decoded", () => {
    expect(end / SEG).toBeGreaterThan(start / SEG);
    const crossesSegment = records.some((r) => r.lsn / SEG !== (r.lsn + BigInt(r.totalLength) - 1n) / SEG);
    const crossesPage = records.filter((r) => r.lsn / 8192n !== (r.lsn + BigInt(r.totalLength) - 1n) / 8192n);
    expect(crossesPage.length).toBeGreaterThan(100);
    // a segment boundary is crossed either inside a record or between two records
    const boundaryRecord = records.find((r) => r.lsn / SEG !== (r.endLsn - 1n) / SEG);
    expect(crossesSegment || boundaryRecord !== undefined).toBe(true);
    for (let i = 1; i < records.length; i++) {
      const gapFree = records[i].lsn === records[i - 1].endLsn || (records[i - 1].endLsn % 8192n === 0n && records[i].lsn - records[i - 1].endLsn <= 40n);
      expect(gapFree, `${formatLsn(records[i - 1].endLsn)} -> ${formatLsn(records[i].lsn)}`).toBe(true);
      expect(records[i].prev).toBe(records[i - 1].lsn);
    }
  });

  test("feeding random chunks of 1..9000 bytes yields exactly the same records as whole segments", () => {
    let seed = 12345;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return 1 + (seed % 9000);
    };
    const chunked = [...readWalSegments(cluster.walDir, start, end, { chunkSize: rand })];
    expect(chunked.length).toBe(records.length);
    for (let i = 0; i < records.length; i++) {
      const a = records[i];
      const b = chunked[i];
      if (a.lsn !== b.lsn || a.endLsn !== b.endLsn || !a.raw.equals(b.raw)) {
        expect.fail(`record #${i} differs: ${formatLsn(a.lsn)}..${formatLsn(a.endLsn)} vs ${formatLsn(b.lsn)}..${formatLsn(b.endLsn)}`);
      }
    }
  });

  test("borrowed record bytes equal the copied ones until the next record, in chunks of any size", () => {
    const segStart = (start / SEG) * SEG;
    const bytes = readFileSync(path.join(cluster.walDir, walFileName(1, start)));
    let seed = 777;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return 1 + (seed % 20000);
    };
    const decoder = new WalStreamDecoder(start, { borrowRecordBytes: true });
    let i = 0;
    let borrowed = 0;
    for (let off = Number(start - segStart); off < bytes.length && i < records.length; ) {
      const n = rand();
      decoder.feed(bytes.subarray(off, off + n));
      off += n;
      for (const r of decoder.drain()) {
        const expected = records[i++];
        // checked before the next record or feed, which may overwrite borrowed bytes
        if (r.lsn !== expected.lsn || r.endLsn !== expected.endLsn || !r.raw.equals(expected.raw) || !r.mainData.equals(expected.mainData)) {
          expect.fail(`record #${i - 1} at ${formatLsn(expected.lsn)} differs`);
        }
        for (let b = 0; b < r.blocks.length; b++) expect(r.blocks[b].data.equals(expected.blocks[b].data)).toBe(true);
        // (the decoder's buffer is at least 64 KiB; a copy is a pool slice or a buffer of its own size)
        if (r.totalLength < 8192 && r.raw.buffer.byteLength >= 64 * 1024) borrowed++;
      }
    }
    expect(i).toBeGreaterThan(1000);
    // most records lie within a page and are views into the decoder's buffer
    expect(borrowed).toBeGreaterThan(i / 2);
    // records spanning pages (full-page images among them) were checked too
    expect(records.filter((r) => r.lsn / 8192n !== (r.lsn + BigInt(r.totalLength) - 1n) / 8192n).length).toBeGreaterThan(100);
  });

  test("the stream decoder keeps only about one record plus one chunk buffered", () => {
    const segStart = (start / SEG) * SEG;
    const bytes = readFileSync(path.join(cluster.walDir, walFileName(1, start)));
    const decoder = new WalStreamDecoder(start);
    let maxBuffered = 0;
    let n = 0;
    for (let off = Number(start - segStart); off < bytes.length; off += 4096) {
      decoder.feed(bytes.subarray(off, off + 4096));
      for (const _ of decoder.drain()) n++;
      maxBuffered = Math.max(maxBuffered, decoder.bufferedBytes);
    }
    expect(n).toBeGreaterThan(1000);
    expect(maxBuffered).toBeLessThan(3 * 8192 + 4096);
  });

  test("a corrupt page header or contrecord length is rejected with an error naming the page LSN", () => {
    const segStart = (start / SEG) * SEG;
    const original = readFileSync(path.join(cluster.walDir, walFileName(1, start)));
    const decodeAll = (bytes: Buffer) => {
      const decoder = new WalStreamDecoder(start);
      decoder.feed(bytes.subarray(Number(start - segStart)));
      for (const _ of decoder.drain());
    };
    const firstPage = Number(start - segStart) - (Number(start - segStart) % 8192) + 8192;
    const badMagic = Buffer.from(original);
    badMagic.writeUInt16LE(0xd111, firstPage + 8192);
    expect(() => decodeAll(badMagic)).toThrow(WalDecodeError);
    expect(() => decodeAll(badMagic)).toThrow(`invalid magic number 0xD111 in WAL page at ${formatLsn(segStart + BigInt(firstPage + 8192))}`);

    const badAddr = Buffer.from(original);
    badAddr.writeBigUInt64LE(0n, firstPage + 8);
    expect(() => decodeAll(badAddr)).toThrow(`unexpected pageaddr 0/0 in WAL page at ${formatLsn(segStart + BigInt(firstPage))}`);

    let contPage = firstPage;
    while ((original.readUInt16LE(contPage + 2) & 1) === 0) contPage += 8192;
    const badRemLen = Buffer.from(original);
    badRemLen.writeUInt32LE(original.readUInt32LE(contPage + 16) + 8, contPage + 16);
    expect(() => decodeAll(badRemLen)).toThrow(new RegExp(`invalid contrecord length \\d+ \\(expected \\d+\\) for record at \\S+ at ${formatLsn(segStart + BigInt(contPage))}$`));
  });

  test("starting at a page whose first bytes continue an earlier record skips to the next record", () => {
    const spanning = records.find((r, i) => i > 10 && r.lsn / 8192n !== (r.lsn + BigInt(r.totalLength) - 1n) / 8192n && r.totalLength < 8000);
    expect(spanning).toBeDefined();
    const page = ((spanning!.lsn / 8192n) + 1n) * 8192n;
    const expected = records.filter((r) => r.lsn > page).slice(0, 50).map((r) => toWaldumpEntry(r));
    const got = [...readWalSegments(cluster.walDir, page, end)].slice(0, 50).map((r) => toWaldumpEntry(r));
    expect(got).toEqual(expected);
  });

  test("formatRecordLine prints what plain pg_waldump prints, up to the rmgr-specific desc", async () => {
    const { stdout } = await cluster.run("pg_waldump", ["-p", cluster.walDir, "-s", formatLsn(start), "-n", "300", walFileName(1, start)]);
    const lines = stdout.trim().split("\n");
    expect(lines).toHaveLength(300);
    for (let i = 0; i < lines.length; i++) {
      const ours = formatRecordLine(records[i]);
      const head = (l: string) => l.slice(0, l.indexOf("desc: ") + 6) + parsePgWaldumpLine(l)!.type;
      expect(head(ours)).toBe(head(lines[i]));
      expect(parsePgWaldumpLine(ours)).toEqual(parsePgWaldumpLine(lines[i]));
    }
  });

  test("decode throughput", () => {
    const bytes = Number(end - start);
    const t0 = performance.now();
    let n = 0;
    for (const _ of readWalSegments(cluster.walDir, start, end)) n++;
    const ms = performance.now() - t0;
    console.log(`decoded ${n} records, ${(bytes / 1048576).toFixed(1)} MiB of WAL in ${ms.toFixed(0)} ms: ${(bytes / 1048576 / (ms / 1000)).toFixed(0)} MiB/s`);
    expect(n).toBe(records.length);
  });
});
