// `npm start`: installs what is missing, generates the Prisma client, migrates the embedded
// database, builds the dashboard, then runs the pageserver (page service 127.0.0.1:64000,
// API + /metrics 127.0.0.1:9898) and the dashboard (127.0.0.1:3000). Ctrl-C stops everything.
import { spawn } from "node:child_process";
import { pageserverEnv } from "../apps/pageserver/daemon-env.mjs";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { ensureNpmDependencies, ensurePostgres, root, run, step } from "./setup.mjs";

const dataDir = path.resolve(root, process.env.STRATA_DATA ?? ".strata");
const httpListen = process.env.STRATA_HTTP_LISTEN ?? "127.0.0.1:9898";
const pgListen = process.env.STRATA_PG_LISTEN ?? "127.0.0.1:64000";
const webPort = process.env.STRATA_WEB_PORT ?? "3000";

try {
  ensureNpmDependencies();
  ensurePostgres();
  mkdirSync(dataDir, { recursive: true });
  step(`applying metadata migrations (${process.env.DATABASE_URL ? "DATABASE_URL" : path.join(dataDir, "meta.db")})`);
  run(process.execPath, ["scripts/migrate.mjs"], { env: { ...process.env, STRATA_DATA: dataDir } });
  step("building the dashboard");
  run(path.join(root, "node_modules/.bin/turbo"), ["run", "build", "--filter=@strata/web", "--output-logs=errors-only"]);
} catch (err) {
  console.error(`\nnpm start failed: ${err.message}`);
  process.exit(1);
}

step(`starting pageserver (pages ${pgListen}, API ${httpListen}) and dashboard (http://127.0.0.1:${webPort})`);
const children = [
  spawn(process.execPath, ["apps/pageserver/bin/strata.mjs", "pageserver", "--data", dataDir, "--pg-listen", pgListen, "--http-listen", httpListen], {
    cwd: root,
    stdio: "inherit",
    env: pageserverEnv(),
  }),
  spawn(path.join(root, "node_modules/.bin/next"), ["start", "-H", "127.0.0.1", "-p", webPort], {
    cwd: path.join(root, "apps/web"),
    stdio: "inherit",
    env: { ...process.env, STRATA_API: `http://${httpListen}` },
  }),
];

let stopping = false;
function stopAll(code) {
  if (stopping) return;
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  const force = setTimeout(() => children.forEach((c) => c.exitCode === null && c.kill("SIGKILL")), 10_000);
  force.unref();
  Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once("exit", r))))).then(() => process.exit(code));
}
process.on("SIGINT", () => stopAll(0));
process.on("SIGTERM", () => stopAll(0));
for (const child of children) {
  child.once("exit", (code) => {
    if (!stopping) {
      console.error(`a Strata process exited unexpectedly (code ${code}); stopping the rest`);
      stopAll(code ?? 1);
    }
  });
}
