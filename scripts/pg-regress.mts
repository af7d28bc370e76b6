// PostgreSQL's regression suites as workloads for the scripts beside this one: the main suite
// (pg_regress, src/test/regress), the isolation suite (pg_isolation_regress, src/test/isolation:
// concurrent sessions, row locks, multixacts) or contrib modules' own tests (contrib/<module>, each
// in a database of its own). Finds the suite in a PostgreSQL 15 source tree,
// builds the main suite's C functions, and runs a schedule against a server. Not part of npm test.
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import path from "node:path";
import { makePostgresTempDir, PG_BIN } from "@strata/core/testing";

export class RegressSetupError extends Error {}

export type SuiteKind = "regress" | "isolation" | "contrib";

/** contrib modules whose own tests the contrib suite runs: bloom (generic WAL), trigram, btree and other operator classes over GiST and GIN */
const CONTRIB_MODULES = ["bloom", "pg_trgm", "btree_gist", "btree_gin", "hstore", "intarray", "ltree", "cube", "citext", "pg_visibility", "seg", "amcheck", "pageinspect"];

export interface RegressSuite {
  /** src/test/regress (or src/test/isolation) of the source tree */
  regressDir: string;
  schedule: string;
  /** the postgres user's: pg_regress writes its results (and the tablespace test's directory) here */
  workDir: string;
  run(port: number): { passed: boolean; failed: string[] };
  remove(): void;
}

/**
 * `source` is a PostgreSQL 15 source tree (`apt-get source postgresql-15`, which needs deb-src
 * entries in the apt sources); `schedule` a file or the name of one in the suite's directory
 * (default parallel_schedule, or isolation_schedule). The main suite's regress.so is built against
 * the installed server headers (package postgresql-server-dev-15).
 */
export function prepareRegress(source: string, kind: SuiteKind = "regress", schedule?: string): RegressSuite {
  if (kind === "contrib") return prepareContrib(source);
  const regressDir = path.resolve(source, "src/test", kind);
  const defaultSchedule = kind === "regress" ? "parallel_schedule" : "isolation_schedule";
  if (!existsSync(path.join(regressDir, defaultSchedule))) throw new RegressSetupError(`${regressDir} has no ${defaultSchedule}: not a PostgreSQL source tree`);
  const scheduleFile = schedule && existsSync(schedule) ? path.resolve(schedule) : path.join(regressDir, schedule ?? defaultSchedule);
  if (!existsSync(scheduleFile)) throw new RegressSetupError(`schedule ${scheduleFile} not found`);
  const pgRegress = path.join(PG_BIN, "..", "lib", "pgxs", "src", "test", kind, kind === "regress" ? "pg_regress" : "pg_isolation_regress");
  if (!existsSync(pgRegress)) throw new RegressSetupError(`${pgRegress} not found`);
  const workDir = makePostgresTempDir("strata-regress-");
  const libDir = path.join(workDir, "lib");
  mkdirSync(libDir);
  if (kind === "regress") {
    const includeDir = execFileSync(path.join(PG_BIN, "pg_config"), ["--includedir-server"]).toString().trim();
    if (!existsSync(path.join(includeDir, "postgres.h"))) {
      rmSync(workDir, { recursive: true, force: true });
      throw new RegressSetupError(`no server headers in ${includeDir}: install postgresql-server-dev-15`);
    }
    execFileSync("gcc", ["-O1", "-fPIC", "-shared", `-I${includeDir}`, "-o", path.join(libDir, "regress.so"), path.join(regressDir, "regress.c")]);
    // the suite loads contrib's autoinc and refint from the same directory
    for (const lib of ["autoinc.so", "refint.so"]) symlinkSync(path.join(PG_BIN, "..", "lib", lib), path.join(libDir, lib));
  }
  chmodSync(workDir, 0o755);
  execFileSync("chown", ["-R", "postgres:postgres", workDir]);
  return {
    regressDir,
    schedule: scheduleFile,
    workDir,
    run(port) {
      const args = [`--inputdir=${regressDir}`, `--outputdir=${workDir}`, `--bindir=${PG_BIN}`, `--dlpath=${libDir}`, `--schedule=${scheduleFile}`, "--host=127.0.0.1", `--port=${port}`, "--user=postgres", "--max-connections=8"];
      try {
        execFileSync("runuser", ["-u", "postgres", "--", pgRegress, ...args], { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 26 });
        return { passed: true, failed: [] };
      } catch (err) {
        // failing tests (another locale, say) still wrote their WAL: callers go on
        return { passed: false, failed: String((err as { stdout?: Buffer }).stdout ?? "").split("\n").filter((line) => /FAILED/.test(line)) };
      }
    },
    remove() {
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}

function prepareContrib(source: string): RegressSuite {
  const contribDir = path.resolve(source, "contrib");
  const pgRegress = path.join(PG_BIN, "..", "lib", "pgxs", "src", "test", "regress", "pg_regress");
  if (!existsSync(pgRegress)) throw new RegressSetupError(`${pgRegress} not found`);
  const tests = new Map<string, string[]>();
  for (const module of CONTRIB_MODULES) {
    const makefile = path.join(contribDir, module, "Makefile");
    if (!existsSync(makefile)) throw new RegressSetupError(`${makefile} not found: not a PostgreSQL source tree`);
    const regress = /^REGRESS\s*=\s*(.*)$/m.exec(readFileSync(makefile, "utf8").replace(/\\\n/g, " "));
    if (!regress) throw new RegressSetupError(`${makefile} lists no REGRESS tests`);
    tests.set(module, regress[1].trim().split(/\s+/));
  }
  const workDir = makePostgresTempDir("strata-regress-");
  chmodSync(workDir, 0o755);
  return {
    regressDir: contribDir,
    schedule: CONTRIB_MODULES.join(" "),
    workDir,
    run(port) {
      const failed: string[] = [];
      for (const [module, names] of tests) {
        const outputDir = path.join(workDir, module);
        mkdirSync(outputDir);
        execFileSync("chown", ["postgres:postgres", outputDir]);
        const args = [`--inputdir=${path.join(contribDir, module)}`, `--outputdir=${outputDir}`, `--bindir=${PG_BIN}`, "--host=127.0.0.1", `--port=${port}`, "--user=postgres", `--dbname=contrib_${module}`, ...names];
        try {
          // the tests read their data files (\copy … from 'data/…') relative to the module
          execFileSync("runuser", ["-u", "postgres", "--", pgRegress, ...args], { stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 26, cwd: path.join(contribDir, module) });
        } catch (err) {
          failed.push(...String((err as { stdout?: Buffer }).stdout ?? "").split("\n").filter((line) => /FAILED/.test(line)).map((line) => `${module}: ${line.trim()}`));
        }
      }
      return { passed: failed.length === 0, failed };
    },
    remove() {
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}

/** Options every regression script takes: --source DIR, --suite regress|isolation|contrib, --schedule NAME|FILE. */
export const SUITE_OPTIONS = {
  source: { type: "string" },
  suite: { type: "string", default: "regress" },
  schedule: { type: "string" },
} as const;

/** Prints `script: message` and exits with code 2 (a usage or setup error, not a finding). */
export function exitWithUsageError(script: string, message: string): never {
  console.error(`${script}: ${message}`);
  process.exit(2);
}

/** The suite the options name, prepared; a missing source or setup problem ends the script. */
export function suiteFromOptions(script: string, values: { source?: string; suite?: string; schedule?: string }): RegressSuite {
  if (!values.source) exitWithUsageError(script, "--source DIR (a PostgreSQL 15 source tree) is required");
  if (values.suite !== "regress" && values.suite !== "isolation" && values.suite !== "contrib") exitWithUsageError(script, `--suite is regress, isolation or contrib, not ${values.suite}`);
  try {
    return prepareRegress(values.source!, values.suite as SuiteKind, values.schedule);
  } catch (err) {
    if (err instanceof RegressSetupError) exitWithUsageError(script, err.message);
    throw err;
  }
}
