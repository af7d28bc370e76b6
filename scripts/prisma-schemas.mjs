// Derives the PostgreSQL variant of the Prisma schema from prisma/schema.prisma (the one
// source of truth) and generates both clients. Node built-ins only: runs from postinstall.
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const sqlite = readFileSync(path.join(root, "prisma/schema.prisma"), "utf8");
const postgres = sqlite
  .replace('provider = "sqlite"', 'provider = "postgresql"')
  .replace('output     = "../packages/api/generated/prisma"', 'output     = "../../packages/api/generated/prisma-pg"');
mkdirSync(path.join(root, "prisma/postgres"), { recursive: true });
const target = path.join(root, "prisma/postgres/schema.prisma");
const header = "// GENERATED from prisma/schema.prisma by scripts/prisma-schemas.mjs; do not edit.\n";
writeFileSync(target, header + postgres);

if (!process.argv.includes("--schema-only")) {
  const prisma = path.join(root, "node_modules/.bin/prisma");
  const env = { ...process.env, CHECKPOINT_DISABLE: "1", PRISMA_HIDE_UPDATE_MESSAGE: "1" };
  execFileSync(prisma, ["generate"], { cwd: root, stdio: "inherit", env: { ...env, DATABASE_URL: "file:./unused.db" } });
  execFileSync(prisma, ["generate"], { cwd: root, stdio: "inherit", env: { ...env, DATABASE_URL: "postgresql://u@127.0.0.1:1/unused" } });
}
