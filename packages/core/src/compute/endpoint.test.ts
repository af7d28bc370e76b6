import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { fakeReader, LSN } from "../basebackup/testutil.ts";
import { prepareDataDirectory } from "./endpoint.ts";

describe("endpoint data directory from a full backup", () => {
  const dirs: string[] = [];
  const dataDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-endpoint-"));
    dirs.push(dir);
    return path.join(dir, "data");
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("extracts the backup through tar", async () => {
    const dir = dataDir();
    const result = await prepareDataDirectory(fakeReader(), LSN, dir);
    expect(readFileSync(path.join(dir, "PG_VERSION"), "utf8")).toBe("15\n");
    expect(readFileSync(path.join(dir, "base/5/16384")).length).toBe(2 * 8192); // first 1 GB segment of 2 blocks
    expect(existsSync(path.join(dir, "global/pg_control"))).toBe(true);
    expect(result.relationPages).toBeGreaterThan(0);
  });

  it("reports a backup that fails as itself, not as tar's complaint about the cut archive", async () => {
    const failing = fakeReader({
      getPage: async () => {
        throw new Error("no redo support for this record");
      },
    });
    await expect(prepareDataDirectory(failing, LSN, dataDir())).rejects.toThrow(/base\/5\/16384 block 0 .*no redo support/);
  });

  it("says so when tar cannot run, rather than hanging", async () => {
    const saved = process.env.PATH;
    process.env.PATH = "/nonexistent";
    try {
      await expect(prepareDataDirectory(fakeReader(), LSN, dataDir())).rejects.toThrow(/extracting the full backup failed: tar exited with null: .*ENOENT/);
    } finally {
      process.env.PATH = saved;
    }
  });
});
