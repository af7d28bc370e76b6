import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ScramSession } from "./auth.ts";
import { BodyReader, message, MessageReader, ProtocolViolation } from "./protocol.ts";
import { readTar, TarFormatError, type TarEntry } from "./tar.ts";

describe("message writer and reader", () => {
  it("patches the length and round-trips every field type", () => {
    const msg = message("d").char("r").uint64(0x1_0000_0010n).int64(-5n).int32(-7).int16(3).int8(255).cstring("héllo").bytes(Buffer.from([1, 2])).end();
    expect(msg[0]).toBe("d".charCodeAt(0));
    expect(msg.readInt32BE(1)).toBe(msg.length - 1);
    const reader = new MessageReader();
    reader.feed(msg);
    const frame = reader.next()!;
    expect(frame.type).toBe("d");
    const r = new BodyReader(frame.body);
    expect([r.char(), r.uint64(), r.int64(), r.int32(), r.int16(), r.int8(), r.cstring(), [...r.rest()]]).toEqual(["r", 0x1_0000_0010n, -5n, -7, 3, 255, "héllo", [1, 2]]);
    expect(reader.next()).toBeUndefined();
  });

  it("writes an untagged startup message whose length includes itself", () => {
    const msg = message().int32(196608).cstring("user").cstring("u").int8(0).end();
    expect(msg.readInt32BE(0)).toBe(msg.length);
  });

  it("cuts frames out of arbitrarily split chunks, one byte at a time included", () => {
    const msgs = Array.from({ length: 50 }, (_, i) => message(i % 2 ? "D" : "d").bytes(Buffer.alloc(i * 37, i)).end());
    const all = Buffer.concat(msgs);
    for (const step of [1, 3, 64, 1000, all.length]) {
      const reader = new MessageReader();
      const got: Buffer[] = [];
      for (let i = 0; i < all.length; i += step) {
        reader.feed(all.subarray(i, i + step));
        for (let f = reader.next(); f; f = reader.next()) got.push(f.body);
      }
      expect(got.length).toBe(50);
      got.forEach((body, i) => expect(body.equals(Buffer.alloc(i * 37, i))).toBe(true));
      expect(reader.bufferedBytes).toBe(0);
    }
  });

  it("returns a zero-copy view when a frame lies inside one chunk", () => {
    const chunk = message("d").bytes(Buffer.alloc(100, 9)).end();
    const reader = new MessageReader();
    reader.feed(chunk);
    const frame = reader.next()!;
    expect(frame.body.buffer).toBe(chunk.buffer);
  });

  it("rejects a nonsense length instead of waiting forever", () => {
    const reader = new MessageReader();
    reader.feed(Buffer.from([0x64, 0, 0, 0, 1]));
    expect(() => reader.next()).toThrow(ProtocolViolation);
  });
});

describe("password authentication", () => {
  it("computes the RFC 7677 SCRAM-SHA-256 example exchange", () => {
    const s = new ScramSession("pencil", "rOprNGfwEbeRWgbNEkqO", "user");
    expect(s.clientFirst()).toBe("n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    const final = s.clientFinal("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    expect(final).toBe("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
    expect(() => s.verifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")).not.toThrow();
    expect(() => s.verifyServerFinal("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")).toThrow(/signature/);
  });
});

describe("streaming tar reader", () => {
  function makeTar(format: "gnu" | "pax" | "ustar"): { tar: Buffer; files: Map<string, Buffer> } {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-tar-"));
    try {
      const files = new Map<string, Buffer>();
      const longDir = "d".repeat(60) + "/" + "e".repeat(60);
      mkdirSync(path.join(dir, "root", longDir), { recursive: true });
      const add = (rel: string, content: Buffer) => {
        writeFileSync(path.join(dir, "root", rel), content);
        files.set(rel, content);
      };
      add("empty", Buffer.alloc(0));
      add("small", Buffer.from("hello"));
      add("exact512", Buffer.alloc(512, 7));
      add("big", Buffer.from(Array.from({ length: 300_001 }, (_, i) => i % 251)));
      if (format !== "ustar") add(`${longDir}/${"f".repeat(80)}`, Buffer.from("long"));
      symlinkSync("/somewhere/else", path.join(dir, "root", "link"));
      const tar = execFileSync("tar", [`--format=${format}`, "-C", path.join(dir, "root"), "-cf", "-", "."], { maxBuffer: 64 << 20 });
      return { tar, files };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  async function parse(tar: Buffer, chunk: number) {
    let pos = 0;
    const entries: TarEntry[] = [];
    const contents = new Map<string, Buffer>();
    await readTar(
      async () => (pos >= tar.length ? null : tar.subarray(pos, (pos += chunk))),
      async (entry, body) => {
        entries.push(entry);
        const parts: Buffer[] = [];
        for await (const b of body) parts.push(b);
        if (entry.type === "file") contents.set(entry.path, Buffer.concat(parts));
      },
    );
    return { entries, contents };
  }

  for (const format of ["gnu", "pax", "ustar"] as const) {
    it(`reads ${format} archives (long names, empty and block-sized files, symlinks) from odd-sized chunks`, async () => {
      const { tar, files } = makeTar(format);
      for (const chunk of [7, 512, 65536]) {
        const { entries, contents } = await parse(tar, chunk);
        expect(new Set(contents.keys())).toEqual(new Set(files.keys()));
        for (const [p, c] of files) expect(contents.get(p)!.equals(c)).toBe(true);
        const link = entries.find((e) => e.path === "link")!;
        expect(link).toMatchObject({ type: "symlink", linkTarget: "/somewhere/else", size: 0 });
        expect(entries.find((e) => e.path === "big")).toMatchObject({ type: "file", size: 300_001 });
        expect(entries.some((e) => e.type === "dir")).toBe(true);
      }
    });
  }

  it("skips content the handler does not read", async () => {
    const { tar, files } = makeTar("gnu");
    const seen: string[] = [];
    let pos = 0;
    await readTar(async () => (pos >= tar.length ? null : tar.subarray(pos, (pos += 1000))), async (e) => {
      if (e.type === "file") seen.push(e.path);
    });
    expect(new Set(seen)).toEqual(new Set(files.keys()));
  });

  it("detects a corrupted header checksum", async () => {
    const { tar } = makeTar("ustar");
    const bad = Buffer.from(tar);
    bad[10] ^= 0x01;
    let pos = 0;
    await expect(readTar(async () => (pos >= bad.length ? null : bad.subarray(pos, (pos += 4096))), async () => {})).rejects.toThrow(TarFormatError);
  });
});
