// Bootstrapping a tenant without a primary: initdb (as the postgres user, into a temp dir) makes a
// fresh cluster whose last WAL record is a shutdown checkpoint; its files are imported like a base
// backup at the end of that record, so the timeline is readable and startable there at once.
import { mkdtempSync, readdirSync, rmSync, statSync, createReadStream } from "node:fs";
import os from "node:os";
import path from "node:path";
import { chownToPostgres, runAsPostgres } from "../compute/postgres.ts";
import { parseLsn, type Lsn } from "../lsn.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { readWalSegments } from "../wal/reader.ts";
import { BaseBackupImporter } from "./import-basebackup.ts";

function* files(root: string, dir = ""): Generator<string> {
  for (const name of readdirSync(path.join(root, dir))) {
    const rel = dir ? `${dir}/${name}` : name;
    if (statSync(path.join(root, rel)).isDirectory()) yield* files(root, rel);
    else yield rel;
  }
}

export async function bootstrapTimeline(store: TimelineStore): Promise<{ lsn: Lsn }> {
  const base = mkdtempSync(path.join(os.tmpdir(), "strata-initdb-"));
  try {
    chownToPostgres(base);
    const dataDir = path.join(base, "data");
    await runAsPostgres("initdb", ["-D", dataDir, "-U", "postgres", "--auth=trust", "--no-sync", "--no-instructions"]);
    const { stdout } = await runAsPostgres("pg_controldata", ["-D", dataDir]);
    const checkpoint = parseLsn(/Latest checkpoint location:\s+(\S+)/.exec(stdout)![1]);
    let end: Lsn | undefined;
    for (const record of readWalSegments(path.join(dataDir, "pg_wal"), checkpoint)) {
      end = record.endLsn;
      break;
    }
    if (end === undefined) throw new Error("initdb left no checkpoint record");
    const importer = new BaseBackupImporter(store, end);
    for (const file of files(dataDir)) {
      if (file.startsWith("pg_wal/")) continue;
      await importer.addFile(file, createReadStream(path.join(dataDir, file)));
    }
    await importer.finish(end);
    return { lsn: end };
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}
