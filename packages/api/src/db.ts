// Opens the metadata database: SQLite (embedded default) or PostgreSQL when the URL says so.
// Both generated clients share one model shape; callers see the SQLite client's types.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import pg from "pg";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../generated/prisma/client.ts";
import { PrismaClient as PgPrismaClient } from "../generated/prisma-pg/client.ts";

export type Database = PrismaClient;

/** The part of better-sqlite3 (the SQLite adapter's driver; no type declarations) used here. */
type SqliteDatabase = { prepare(sql: string): { all(): unknown[] }; close(): void };
const SQLite = createRequire(import.meta.url)("better-sqlite3") as new (file: string, options: { readonly: boolean; fileMustExist: boolean }) => SqliteDatabase;

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:/.test(url);
}

export function defaultDatabaseUrl(dataDir: string): string {
  return `file:${path.resolve(dataDir, "meta.db")}`;
}

export function openDatabase(url: string): Database {
  if (isPostgresUrl(url)) {
    return new PgPrismaClient({ adapter: new PrismaPg({ connectionString: url }) }) as unknown as Database;
  }
  return new PrismaClient({ adapter: new PrismaBetterSQLite3({ url }) });
}

/**
 * Applies the committed migrations (idempotent). SQLite uses `prisma migrate deploy`. On
 * PostgreSQL, Prisma 6.19's js-engine migrate fails on PG 15 ("Column type 'name' could not be
 * deserialized"), so the committed SQL of prisma/postgres/migrations is applied here instead,
 * each migration in one transaction, recorded in _strata_migrations.
 */
export async function applyMigrations(url: string): Promise<void> {
  if (isPostgresUrl(url)) return applyPostgresMigrations(url);
  // the Prisma CLI takes 1.3-1.7 s to start, on every pageserver start: skip it when it would
  // find nothing to do
  if (sqliteMigrationsApplied(url)) return;
  const prisma = path.join(repoRoot, "node_modules/.bin/prisma");
  await promisify(execFile)(prisma, ["migrate", "deploy"], {
    cwd: repoRoot,
    env: { ...process.env, DATABASE_URL: url, CHECKPOINT_DISABLE: "1", PRISMA_HIDE_UPDATE_MESSAGE: "1" },
    timeout: 120_000,
  });
}

/**
 * Whether an existing SQLite database (at an absolute `file:` path) records every migration of
 * prisma/migrations as applied, finished, not rolled back, and with the checksum (SHA-256 of its
 * migration.sql) of the file as it is now: what `prisma migrate deploy` checks before it reports
 * "No pending migrations". Anything else, or any doubt, is left to Prisma.
 */
export function sqliteMigrationsApplied(url: string): boolean {
  const file = /^file:(\/[^?]*)$/.exec(url)?.[1];
  if (!file || !existsSync(file)) return false;
  const dir = path.join(repoRoot, "prisma/migrations");
  let applied: Array<{ migration_name: string; checksum: string; finished_at: string | null; rolled_back_at: string | null }>;
  try {
    const db = new SQLite(file, { readonly: true, fileMustExist: true });
    try {
      applied = db.prepare("SELECT migration_name, checksum, finished_at, rolled_back_at FROM _prisma_migrations").all() as typeof applied;
    } finally {
      db.close();
    }
  } catch {
    return false; // no migrations table yet, or not a database Prisma made: Prisma says what is wrong
  }
  const done = new Map<string, string>();
  for (const row of applied) {
    if (row.rolled_back_at !== null) continue;
    if (row.finished_at === null) return false; // a failed migration: Prisma reports it
    done.set(row.migration_name, row.checksum);
  }
  const names = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  return names.every((name) => done.get(name) === createHash("sha256").update(readFileSync(path.join(dir, name, "migration.sql"))).digest("hex"));
}

async function applyPostgresMigrations(url: string): Promise<void> {
  const dir = path.join(repoRoot, "prisma/postgres/migrations");
  const names = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("CREATE TABLE IF NOT EXISTS _strata_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    for (const name of names) {
      await client.query("BEGIN");
      try {
        // Serializes concurrent deployers; the loser then sees the row and skips.
        await client.query("LOCK TABLE _strata_migrations IN EXCLUSIVE MODE");
        const done = await client.query("SELECT 1 FROM _strata_migrations WHERE name = $1", [name]);
        if (done.rowCount === 0) {
          await client.query(readFileSync(path.join(dir, name, "migration.sql"), "utf8"));
          await client.query("INSERT INTO _strata_migrations (name) VALUES ($1)", [name]);
        }
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${name} failed: ${(err as Error).message}`);
      }
    }
  } finally {
    await client.end();
  }
}
