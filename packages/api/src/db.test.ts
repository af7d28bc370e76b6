import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { afterEach, describe, expect, it } from "vitest";
import { applyMigrations, defaultDatabaseUrl, sqliteMigrationsApplied } from "./db.ts";

type Db = { prepare(sql: string): { run(...args: unknown[]): unknown; all(): unknown[] }; close(): void };
const SQLite = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => Db;

describe("SQLite migrations", () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-db-"));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("leaves the Prisma CLI out only when every migration is applied as it is committed", async () => {
    const dir = tempDir();
    const url = defaultDatabaseUrl(dir);
    // no database yet, and relative or non-file URLs: Prisma decides
    expect(sqliteMigrationsApplied(url)).toBe(false);
    expect(sqliteMigrationsApplied("file:./meta.db")).toBe(false);
    await applyMigrations(url);
    expect(sqliteMigrationsApplied(url)).toBe(true);
    // the schema is there and usable
    const db = new SQLite(path.join(dir, "meta.db"));
    try {
      expect(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'Tenant'").all()).toHaveLength(1);
    } finally {
      db.close();
    }

    // a migration whose file changed since it was applied, one rolled back, one that failed, or
    // one missing: not up to date
    const cases: Array<[string, string]> = [
      ["checksum", "UPDATE _prisma_migrations SET checksum = 'x' WHERE migration_name = '0002_timeline_primary'"],
      ["rolled back", "UPDATE _prisma_migrations SET rolled_back_at = finished_at WHERE migration_name = '0003_endpoint_process'"],
      ["failed", "UPDATE _prisma_migrations SET finished_at = NULL WHERE migration_name = '0001_init'"],
      ["missing", "DELETE FROM _prisma_migrations WHERE migration_name = '0003_endpoint_process'"],
    ];
    for (const [what, sql] of cases) {
      const copyDir = tempDir();
      copyFileSync(path.join(dir, "meta.db"), path.join(copyDir, "meta.db"));
      const copy = new SQLite(path.join(copyDir, "meta.db"));
      try {
        copy.prepare(sql).run();
      } finally {
        copy.close();
      }
      expect(sqliteMigrationsApplied(defaultDatabaseUrl(copyDir)), what).toBe(false);
    }
  });
});
