// Prisma 6.19 in offline "js engine" mode: queries go through a driver adapter,
// never through a downloaded native engine. SQLite by default, PostgreSQL when
// DATABASE_URL is a postgres URL.
import path from "node:path";
import { defineConfig } from "prisma/config";
import { PrismaBetterSQLite3 } from "@prisma/adapter-better-sqlite3";
import { PrismaPg } from "@prisma/adapter-pg";

const url = process.env.DATABASE_URL ?? `file:${path.resolve(process.env.STRATA_DATA ?? ".strata", "meta.db")}`;
const isPostgres = /^postgres(ql)?:/.test(url);
// The schema reads env("DATABASE_URL"); without it the CLI falls back to downloading engines.
process.env.DATABASE_URL = url;

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: isPostgres ? "prisma/postgres/schema.prisma" : "prisma/schema.prisma",
  migrations: { path: isPostgres ? "prisma/postgres/migrations" : "prisma/migrations" },
  adapter: async () => (isPostgres ? new PrismaPg({ connectionString: url }) : new PrismaBetterSQLite3({ url })),
});
