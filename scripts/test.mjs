// `npm test`: installs what is missing, then typecheck, unit + integration (real PostgreSQL 15)
// and browser end-to-end tests. Ends with one line "N passed, N failed" summed over all suites.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { ensureChromium, ensureNpmDependencies, ensurePostgres, root, run, step } from "./setup.mjs";

let passed = 0;
let failed = 0;
const failures = [];

function gate(name, cmd, args) {
  step(name);
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit", env: process.env });
  if (result.status === 0) passed++;
  else {
    failed++;
    failures.push(name);
  }
  return result.status === 0;
}

try {
  ensureNpmDependencies();
  ensurePostgres();
  ensureChromium();
} catch (err) {
  console.error(`\nsetup failed: ${err.message}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}

const turbo = path.join(root, "node_modules/.bin/turbo");
gate("typecheck (all workspaces)", turbo, ["run", "typecheck", "--output-logs=errors-only"]);
const built = gate("build the dashboard", turbo, ["run", "build", "--filter=@strata/web", "--output-logs=errors-only"]);
if (!built) rmSync(path.join(root, "apps/web/.next"), { recursive: true, force: true });

step("unit, integration and browser tests (vitest)");
const resultsDir = path.join(root, ".test-results");
mkdirSync(resultsDir, { recursive: true });
const report = path.join(resultsDir, "vitest.json");
rmSync(report, { force: true });
const vitest = spawnSync(
  path.join(root, "node_modules/.bin/vitest"),
  ["run", "--reporter=default", "--reporter=json", `--outputFile.json=${report}`],
  { cwd: root, stdio: "inherit", env: process.env },
);
if (existsSync(report)) {
  const json = JSON.parse(readFileSync(report, "utf8"));
  passed += json.numPassedTests;
  failed += json.numFailedTests;
  for (const file of json.testResults ?? []) {
    // a file that failed to load has no assertions but must count as a failure
    if (file.status === "failed" && (file.assertionResults ?? []).every((a) => a.status !== "failed")) {
      failed++;
      failures.push(path.relative(root, file.name));
    }
    for (const a of file.assertionResults ?? []) if (a.status === "failed") failures.push(a.fullName);
  }
} else {
  failed++;
  failures.push(`vitest produced no report (exit ${vitest.status})`);
}
if (vitest.status !== 0 && failed === 0) {
  failed++;
  failures.push(`vitest exited with ${vitest.status}`);
}

if (failures.length) console.log(`\nFailed:\n${failures.map((f) => `  - ${f}`).join("\n")}`);
console.log(`\n${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
