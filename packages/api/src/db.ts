// Opens the metadata database: SQLite (embedded default) or PostgreSQL when the URL says so.
// Both generated clients share one model shape; callers see the SQLite client's types.
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "../generated/prisma/client.ts";
import { PrismaClient as PgPrismaClient } from "../generated/prisma-pg/client.ts";

export type Database = PrismaClient;

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

/** Applies the committed migrations (idempotent) with `prisma migrate deploy`. */
export async function applyMigrations(url: string): Promise<void> {
  const prisma = path.join(repoRoot, "node_modules/.bin/prisma");
  await promisify(execFile)(prisma, ["migrate", "deploy"], {
    cwd: repoRoot,
    env: { ...process.env, DATABASE_URL: url, CHECKPOINT_DISABLE: "1", PRISMA_HIDE_UPDATE_MESSAGE: "1" },
    timeout: 120_000,
  });
}
