// pg_dumpall of two servers that must hold the same database, compared the way a restore after
// crash recovery allows: unlogged tables come back empty and unlogged sequences at their start, and
// a sequence may be ahead (nextval WAL-logs 32 values at a time), never behind. Used by the
// regression scripts beside this one; not part of npm test.
import { execFileSync } from "node:child_process";
import path from "node:path";
import { PG_BIN } from "@strata/core/testing";

export interface Dump {
  /** every line outside sequence values and unlogged tables' data */
  lines: string[];
  /** sequence -> its value (setval) */
  sequences: Map<string, number>;
  /** sequence -> INCREMENT BY of its definition */
  increments: Map<string, number>;
  unlogged: Set<string>;
}

/** pg_dumpall of the server on 127.0.0.1:port, without psql's per-run \restrict keys, split by parseDump */
export function dumpAll(port: number, unloggedOf?: Set<string>): Dump {
  const lines = execFileSync(path.join(PG_BIN, "pg_dumpall"), ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres"], { maxBuffer: 1 << 30 })
    .toString()
    .split("\n")
    .filter((line) => !/^\\(un)?restrict /.test(line));
  return parseDump(lines, unloggedOf);
}

/** Splits a dump into what must be equal and what may differ after crash recovery. */
export function parseDump(lines: string[], unloggedOf?: Set<string>): Dump {
  const unlogged = unloggedOf ?? new Set(lines.map((line) => /^CREATE UNLOGGED (?:TABLE|SEQUENCE) (\S+)/.exec(line)?.[1]).filter((name): name is string => !!name));
  const out: Dump = { lines: [], sequences: new Map(), increments: new Map(), unlogged };
  let skipping = false;
  let sequence = "";
  for (const line of lines) {
    // CREATE SEQUENCE name / identity columns' SEQUENCE NAME name, then an INCREMENT BY line
    sequence = /^CREATE (?:UNLOGGED )?SEQUENCE (\S+)/.exec(line)?.[1] ?? /^\s+SEQUENCE NAME (\S+)/.exec(line)?.[1] ?? sequence;
    const increment = /^\s+INCREMENT BY (-?\d+)/.exec(line);
    if (increment) out.increments.set(sequence, Number(increment[1]));
    if (skipping) {
      if (line === "\\.") skipping = false;
      continue;
    }
    const copy = /^COPY (\S+) /.exec(line);
    if (copy && unlogged.has(copy[1])) {
      skipping = true;
      continue;
    }
    const setval = /^SELECT pg_catalog\.setval\('([^']+)', (-?\d+), (true|false)\);$/.exec(line);
    if (setval) {
      out.sequences.set(setval[1], Number(setval[2]));
      continue;
    }
    out.lines.push(line);
  }
  return out;
}

/**
 * Prints how `restored` differs from `original` (lines, then sequences behind their value in the
 * original or more than 1024 steps ahead) and returns the number of differences. `names` say whose
 * dump each is ("the primary's dump").
 */
export function compareDumps(original: Dump, restored: Dump, names: { original: string; restored: string }): number {
  const count = new Map<string, number>();
  for (const line of original.lines) count.set(line, (count.get(line) ?? 0) + 1);
  for (const line of restored.lines) count.set(line, (count.get(line) ?? 0) - 1);
  const differing = [...count].filter(([, n]) => n !== 0);
  console.log(`pg_dumpall: ${original.lines.length} lines compared (unlogged tables' data and sequence values aside), ${differing.length} differ`);
  for (const [line, n] of differing.slice(0, 40)) console.log(`  only in ${n > 0 ? names.original : names.restored}: ${line.slice(0, 200)}`);
  let sequencesOff = 0;
  for (const [name, value] of original.sequences) {
    if (original.unlogged.has(name)) continue;
    const after = restored.sequences.get(name);
    const increment = original.increments.get(name) ?? 1;
    const steps = after === undefined ? NaN : (after - value) / increment;
    if (!(steps >= 0 && steps <= 1024)) {
      sequencesOff++;
      console.log(`  sequence ${name} (increment ${increment}): ${value} in ${names.original}, ${after} in ${names.restored}`);
    }
  }
  console.log(`sequences: ${original.sequences.size}, ${sequencesOff} behind (or far ahead of) their value in ${names.original}`);
  console.log(`unlogged relations (data not compared): ${original.unlogged.size}`);
  return differing.length + sequencesOff;
}

/** pg_amcheck of every database (heapallindexed, parent-check); prints the outcome, returns whether it passed */
export function amcheckAll(port: number): boolean {
  try {
    execFileSync(path.join(PG_BIN, "pg_amcheck"), ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "--all", "--install-missing", "--heapallindexed", "--parent-check"], { maxBuffer: 1 << 28 });
    console.log("pg_amcheck --all --heapallindexed --parent-check: no corruption");
    return true;
  } catch (err) {
    console.log(`pg_amcheck failed:\n${String((err as { stdout?: Buffer }).stdout ?? "").slice(0, 4000)}${String((err as { stderr?: Buffer }).stderr ?? "").slice(0, 2000)}`);
    return false;
  }
}
