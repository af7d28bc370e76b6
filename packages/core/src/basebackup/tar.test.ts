import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { readTar, type TarEntry } from "../replication/tar.ts";
import { pageChecksum, setPageChecksum } from "./page-checksum.ts";
import { TAR_TRAILER_SIZE, tarEntrySize, TarWriter, TarWriteError, toTarSink } from "./tar.ts";

async function readBack(archive: Buffer): Promise<Array<{ entry: TarEntry; body: Buffer }>> {
  const out: Array<{ entry: TarEntry; body: Buffer }> = [];
  let done = false;
  await readTar(
    async () => {
      if (done) return null;
      done = true;
      return archive;
    },
    async (entry, body) => {
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(Buffer.from(c));
      out.push({ entry, body: Buffer.concat(chunks) });
    },
  );
  return out;
}

describe("tar sink for a stream", () => {
  it("fails a chunk with the stream's error (EPIPE: the reader closed its end), without an unhandled 'error' event", async () => {
    // a reader that closes its stdin at once and stays alive: the write fails with EPIPE
    const reader = spawn("sh", ["-c", "exec 0<&-; sleep 2"], { stdio: ["pipe", "ignore", "ignore"] });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const sink = toTarSink(reader.stdin);
      await expect(sink(Buffer.alloc(256 * 1024, 1))).rejects.toMatchObject({ code: "EPIPE" });
      await new Promise((r) => setTimeout(r, 100)); // an unhandled 'error' event would fail the test here
    } finally {
      reader.kill("SIGKILL");
    }
  });
});

describe("tar writer", () => {
  it("writes directories and streamed files that a tar reader reads back, with the predicted size", async () => {
    const chunks: Buffer[] = [];
    const tar = new TarWriter(async (c) => void chunks.push(c));
    const longPath = `${"d".repeat(120)}/base/16384/16385_fsm`; // needs the ustar prefix field
    await tar.directory("base");
    await tar.file("PG_VERSION", Buffer.from("15\n"));
    await tar.beginFile("base/5/16384", 3 * 8192);
    for (let i = 0; i < 3; i++) await tar.write(Buffer.alloc(8192, i + 1));
    await tar.endFile();
    await tar.file("empty", Buffer.alloc(0));
    await tar.file(longPath, Buffer.from("long"));
    await tar.finish();
    const archive = Buffer.concat(chunks);
    expect(archive.length).toBe(tar.written);
    expect(archive.length).toBe(tarEntrySize(0) + tarEntrySize(3) + tarEntrySize(3 * 8192) + tarEntrySize(0) + tarEntrySize(4) + TAR_TRAILER_SIZE);
    const entries = await readBack(archive);
    expect(entries.map((e) => [e.entry.path, e.entry.type, e.body.length])).toEqual([
      ["base", "dir", 0],
      ["PG_VERSION", "file", 3],
      ["base/5/16384", "file", 3 * 8192],
      ["empty", "file", 0],
      [longPath, "file", 4],
    ]);
    expect(entries[2].body[8192 * 2]).toBe(3);
    expect(entries[1].entry.mode & 0o777).toBe(0o600);
  });

  it("keeps a chunk that is not ready yet in its place: what follows waits in the queue while the writer goes on", async () => {
    const chunks: Buffer[] = [];
    const tar = new TarWriter(async (c) => void chunks.push(Buffer.from(c)));
    await tar.beginFile("a", 2 * 512);
    let release!: (bytes: Buffer) => void;
    const ready = new Promise<Buffer>((resolve) => (release = resolve));
    const first = tar.writeWhenReady(ready, 512);
    // a write behind it resolves once the sink has it (its buffer may be reused then); headers
    // and padding are taken at once
    const second = tar.write(Buffer.alloc(512, 2));
    await tar.endFile();
    await tar.beginFile("b", 3);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(chunks.length).toBe(1); // a's header only
    release(Buffer.alloc(512, 1));
    await Promise.all([first, second]);
    await tar.write(Buffer.from("bee"));
    await tar.endFile();
    await tar.finish();
    const entries = await readBack(Buffer.concat(chunks));
    expect(entries.map((e) => [e.entry.path, e.body.length])).toEqual([
      ["a", 1024],
      ["b", 3],
    ]);
    expect([entries[0].body[0], entries[0].body[512]]).toEqual([1, 2]);
    expect(Buffer.concat(chunks).length).toBe(tar.written);
  });

  it("writes nothing after a chunk whose bytes failed, and fails the writes after it and finish()", async () => {
    const chunks: Buffer[] = [];
    const tar = new TarWriter(async (c) => void chunks.push(c));
    await tar.beginFile("a", 1024);
    let fail!: (err: Error) => void;
    const failed = tar.writeWhenReady(new Promise<Buffer>((_, reject) => (fail = reject)), 512);
    const after = tar.write(Buffer.alloc(512));
    fail(new Error("page 7 could not be rebuilt"));
    await expect(failed).rejects.toThrow("page 7 could not be rebuilt");
    await expect(after).rejects.toThrow("page 7 could not be rebuilt");
    await tar.endFile();
    await expect(tar.finish()).rejects.toThrow("page 7 could not be rebuilt");
    expect(chunks.length).toBe(1); // the header before it
  });

  it("refuses content that does not match the declared size", async () => {
    const tar = new TarWriter(async () => {});
    await tar.beginFile("f", 10);
    await expect(tar.write(Buffer.alloc(11))).rejects.toThrow(TarWriteError);
    await tar.write(Buffer.alloc(4));
    await expect(tar.endFile()).rejects.toThrow(/6 of 10 bytes missing/);
  });
});

describe("data page checksum", () => {
  it("matches PostgreSQL's pg_checksum_page (values from checksum_impl.h compiled in C)", () => {
    const page = Buffer.alloc(8192);
    page.writeUInt32LE(0x01529f48, 4); // pd_lsn low half
    page.writeUInt16LE(28, 12); // pd_lower
    page.writeUInt16LE(8160, 14); // pd_upper
    page.writeUInt16LE(8192, 16); // pd_special
    page.writeUInt16LE(8192 | 4, 18); // pd_pagesize_version
    page.writeUInt32LE((8160 & 0x7fff) | (1 << 15) | (32 << 17), 24); // lp 1: off 8160, normal, len 32
    page.fill(7, 8160);
    const sum = pageChecksum(page, 0);
    expect(sum).toBe(35777);
    expect(pageChecksum(page, 1)).toBe(35776);
    expect(pageChecksum(page, 131075)).toBe(35776);
    // independent of the stored checksum, dependent on the block number and content
    page.writeUInt16LE(0xbeef, 8);
    expect(pageChecksum(page, 0)).toBe(sum);
    setPageChecksum(page, 0);
    expect(page.readUInt16LE(8)).toBe(sum);
    // a new (all-zero) page keeps no checksum
    const fresh = Buffer.alloc(8192);
    setPageChecksum(fresh, 3);
    expect(fresh.readUInt16LE(8)).toBe(0);
  });
});
