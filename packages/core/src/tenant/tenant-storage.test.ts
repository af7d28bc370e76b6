import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { diskUsageBytes } from "./tenant-storage.ts";

describe("diskUsageBytes", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("counts the blocks of every file in the tree, as du does, and 0 for a directory that is gone", async () => {
    const root = mkdtempSync(path.join(os.tmpdir(), "strata-du-"));
    dirs.push(root);
    mkdirSync(path.join(root, "a", "b"), { recursive: true });
    writeFileSync(path.join(root, "one"), Buffer.alloc(100_000, 1));
    writeFileSync(path.join(root, "a", "b", "two"), Buffer.alloc(300_000, 2));
    const bytes = await diskUsageBytes(root);
    // allocated blocks: at least the bytes written, rounded up per file to the filesystem's blocks
    expect(bytes).toBeGreaterThanOrEqual(400_000);
    expect(bytes).toBeLessThan(400_000 + 2 * 65536 + 4 * 4096);
    expect(await diskUsageBytes(path.join(root, "a"))).toBeGreaterThanOrEqual(300_000);
    expect(await diskUsageBytes(path.join(root, "missing"))).toBe(0);
  });
});
