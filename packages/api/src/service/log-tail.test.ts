import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tailLines } from "./log-tail.ts";

describe("tailLines", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "strata-tail-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, content: string) => {
    const p = path.join(dir, name);
    writeFileSync(p, content);
    return p;
  };

  it("gives the last lines whole, however far back the read from the end has to reach", () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"x".repeat(i % 50)}`);
    const big = file("big.log", lines.join("\n") + "\n");
    expect(tailLines(big, 3)).toEqual(lines.slice(-3));
    expect(tailLines(big, 5000)).toEqual(lines.slice(-5000)); // more than the first 64 KB window holds
    // long lines: the first window holds fewer lines than asked for
    const long = Array.from({ length: 40 }, (_, i) => `${i}:${"y".repeat(10_000)}`);
    expect(tailLines(file("long.log", long.join("\n")), 12)).toEqual(long.slice(-12));
  });

  it("gives a short file whole, without its last newline, and nothing for an empty one", () => {
    expect(tailLines(file("short.log", "a\nb\n"), 100)).toEqual(["a", "b"]);
    expect(tailLines(file("no-newline.log", "a\nb"), 1)).toEqual(["b"]);
    expect(tailLines(file("empty.log", ""), 10)).toEqual([]);
  });
});
