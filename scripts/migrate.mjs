// Applies the metadata migrations to DATABASE_URL, or to $STRATA_DATA/meta.db by default.
import { mkdirSync } from "node:fs";
import path from "node:path";
import { root, run } from "./setup.mjs";

const dataDir = path.resolve(root, process.env.STRATA_DATA ?? ".strata");
mkdirSync(dataDir, { recursive: true });
const url = process.env.DATABASE_URL ?? `file:${path.join(dataDir, "meta.db")}`;
run(path.join(root, "node_modules/.bin/tsx"), ["-e", `import("@strata/api").then((m) => m.applyMigrations(${JSON.stringify(url)}))`], {
  cwd: path.join(root, "apps/pageserver"),
});
