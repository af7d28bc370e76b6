import { execFile } from "node:child_process";
import { closeSync, createWriteStream, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signalAndWait } from "../compute/postgres.ts";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineIngestor } from "../ingest/timeline-ingest.ts";
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { freePort, makePostgresTempDir, PgCluster, pgBinary, runAsPostgres } from "../testing/pgcluster.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { readWalRange, walFileName } from "../wal/reader.ts";
import { ForkNumber } from "../reltag.ts";
import { fullBackup } from "./fullbackup.ts";
import { setPageChecksum } from "./page-checksum.ts";

const execFileAsync = promisify(execFile);
const SEGMENT = 16 * 1024 * 1024;

type Sql = (query: string, database?: string) => Promise<Array<Record<string, unknown>>>;

function sqlOn(port: number): Sql {
  return async (query, database = "postgres") => {
    const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database });
    await client.connect();
    try {
      const result = await client.query(query);
      return (Array.isArray(result) ? result[result.length - 1] : result).rows;
    } finally {
      await client.end();
    }
  };
}

/** Row counts and content digests of every table the workload touches. */
async function fingerprint(sql: Sql) {
  const [accounts] = await sql("SELECT count(*)::int AS n, sum(abalance)::bigint::text AS s, md5(string_agg(aid || ':' || abalance, ',' ORDER BY aid)) AS h FROM pgbench_accounts");
  const [branches] = await sql("SELECT sum(bbalance)::bigint::text AS s FROM pgbench_branches");
  const [tellers] = await sql("SELECT md5(string_agg(tid || ':' || tbalance, ',' ORDER BY tid)) AS h FROM pgbench_tellers");
  const [history] = await sql("SELECT count(*)::int AS n, coalesce(sum(delta), 0)::bigint::text AS s FROM pgbench_history");
  const [extra] = await sql("SELECT count(*)::int AS n, md5(string_agg(id || ':' || v || ':' || n, ',' ORDER BY id)) AS h FROM extra");
  const [items] = await sql("SELECT count(*)::int AS n, md5(string_agg(id || ':' || name, ',' ORDER BY id)) AS h FROM items", "second");
  const [spaced] = await sql("SELECT count(*)::int AS n, md5(string_agg(id || ':' || h, ',' ORDER BY id)) AS h FROM spaced");
  const [things] = await sql("SELECT count(*)::int AS n, sum(id)::bigint::text AS s FROM things", "third");
  const [outside] = await sql("SELECT count(*)::int AS n, md5(string_agg(id || ':' || v, ',' ORDER BY id)) AS h FROM before_import_outside");
  const [inPlace] = await sql("SELECT count(*)::int AS n, sum(id)::bigint::text AS s FROM before_import_in_place");
  const [moved] = await sql("SELECT count(*)::int AS n, md5(string_agg(id || ':' || v, ',' ORDER BY id)) AS h FROM travels", "moved");
  const [movedTable] = await sql("SELECT count(*)::int AS n, sum(id)::bigint::text AS s, pg_tablespace.spcname FROM relocated, pg_class JOIN pg_tablespace ON pg_tablespace.oid = reltablespace WHERE relname = 'relocated' GROUP BY spcname");
  // replication origins' apply progress (a subscriber's): local_lsn is not kept across a restart
  const origins = await sql("SELECT external_id, remote_lsn::text FROM pg_replication_origin_status ORDER BY external_id");
  return { accounts, branches, tellers, history, extra, items, spaced, things, outside, inPlace, moved, movedTable, origins };
}

/** Stops a postmaster by pid (fast shutdown) and waits for it to exit. */
async function stopByPid(pid: number): Promise<void> {
  if (!(await signalAndWait(pid, "SIGINT", 60_000))) process.kill(pid, "SIGQUIT");
}

interface Copy {
  dataDir: string;
  port: number;
  logFile: string;
  sql: Sql;
}

describe("full backup", () => {
  const started = Date.now();
  const step = (what: string) => console.log(`[fullbackup test] ${((Date.now() - started) / 1000).toFixed(1)}s ${what}`);
  let primary: PgCluster | undefined;
  let store: TimelineStore | undefined;
  const work = mkdtempWork();
  /** a tablespace of the primary outside its data directory, there before the import */
  const outsideLocation = makePostgresTempDir("strata-fullbackup-tablespace-");
  /** the last record's end on the timeline, and what the primary had there */
  let lsn: Lsn = 0n;
  let expected: Awaited<ReturnType<typeof fingerprint>>;
  let nextXidAtLsn = 0n;
  const copies: Array<{ base: string; pid: number }> = [];

  /** Extracts a backup into a postgres-owned 0700 dir and starts stock postgres on it. */
  async function startCopy(tarPath: string): Promise<Copy> {
    const base = makePostgresTempDir("strata-fullbackup-copy-");
    const copy = { base, pid: 0 };
    copies.push(copy);
    const dataDir = path.join(base, "data");
    mkdirSync(dataDir, { mode: 0o700 });
    await execFileAsync("tar", ["-xf", tarPath, "-C", dataDir]);
    await execFileAsync("chown", ["-R", "postgres:postgres", dataDir]);
    await execFileAsync("chmod", ["0700", dataDir]);
    const port = await freePort();
    const logFile = path.join(base, "server.log");
    try {
      await runAsPostgres("pg_ctl", ["-D", dataDir, "-l", logFile, "-o", `-p ${port} -k ${base} -c listen_addresses=127.0.0.1`, "-w", "-t", "60", "start"]);
    } finally {
      const pidFile = path.join(dataDir, "postmaster.pid");
      if (existsSync(pidFile)) copy.pid = Number(readFileSync(pidFile, "utf8").split("\n")[0]);
    }
    return { dataDir, port, logFile, sql: sqlOn(port) };
  }

  async function backupTo(name: string, at: Lsn, onProgress?: (bytes: number, total: number) => void) {
    const tarPath = path.join(work, name);
    const stream = createWriteStream(tarPath);
    const result = await fullBackup(new PageReader(store!), at, stream, { onProgress });
    await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    return { tarPath, result };
  }

  function expectCleanStart(copy: Copy) {
    const log = readFileSync(copy.logFile, "utf8");
    expect(log).toContain("database system was shut down at");
    expect(log).not.toMatch(/not properly shut down|redo starts at|automatic recovery/);
  }

  beforeAll(async () => {
    primary = await PgCluster.start({
      initdbArgs: ["--data-checksums"],
      settings: { max_prepared_transactions: 5, autovacuum: "off", wal_keep_size: "1GB", allow_in_place_tablespaces: "on", max_replication_slots: 16 },
    });
    // user tablespaces the import must bring along: one outside the data directory (its own archive
    // in BASE_BACKUP, a symlink in pg_tblspc) and an in-place one
    const before = sqlOn(primary.port);
    await before(`CREATE TABLESPACE outside LOCATION '${outsideLocation}'`);
    await before("CREATE TABLE before_import_outside TABLESPACE outside AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000) g");
    await before("CREATE INDEX before_import_outside_v ON before_import_outside (v) TABLESPACE outside");
    await before("CREATE TABLESPACE in_place LOCATION ''");
    await before("CREATE TABLE before_import_in_place TABLESPACE in_place AS SELECT generate_series(1, 700) AS id");
    await before("CREATE TABLESPACE outside_empty LOCATION ''");
    // a replication origin with progress: the import takes it from pg_logical/replorigin_checkpoint
    await before("SELECT pg_replication_origin_create('before_import'); SELECT pg_replication_origin_advance('before_import', '0/5A5A5A')");
    await before("SELECT pg_replication_origin_create('imported_only'); SELECT pg_replication_origin_advance('imported_only', '0/4A4A4A')");
    store = await TimelineStore.open(path.join(work, "store"));
    const imported = await importFromPrimary(store, primary.connectionString(), "strata_fullbackup");
    step("imported");
    // everything below reaches Strata only as WAL and is rebuilt by its redo
    const sql = sqlOn(primary.port);
    await primary.pgbench(["-i", "-s", "1", "-q"]);
    await sql("CREATE TABLE extra (id serial PRIMARY KEY, v text, n numeric)");
    await sql("INSERT INTO extra (v, n) SELECT md5(g::text), g / 7.0 FROM generate_series(1, 5000) g");
    await sql("CREATE INDEX extra_v ON extra (v)");
    await sql("UPDATE extra SET n = n * 2 WHERE id % 10 = 0");
    await sql("DELETE FROM extra WHERE id % 17 = 0");
    await sql("CREATE DATABASE second");
    await sql("CREATE TABLE items (id int PRIMARY KEY, name text)", "second");
    await sql("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 2000) g", "second");
    await sql("CREATE INDEX items_name ON items (name)", "second");
    await primary.pgbench(["-t", "50", "-c", "2", "-n"]);
    // a user tablespace: a table and an index of this database in it, and a database whose default it is
    await sql("CREATE TABLESPACE elsewhere LOCATION ''");
    await sql("CREATE TABLE spaced TABLESPACE elsewhere AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 3000) g");
    await sql("CREATE INDEX spaced_h ON spaced (h) TABLESPACE elsewhere");
    await sql("CREATE DATABASE third TABLESPACE elsewhere");
    await sql("CREATE TABLESPACE unused LOCATION ''"); // nothing goes in it before the backup
    await sql("CREATE TABLESPACE dropped LOCATION ''");
    await sql("DROP TABLESPACE dropped");
    await sql("CREATE TABLE things (id int PRIMARY KEY)", "third");
    await sql("INSERT INTO things SELECT generate_series(1, 500)", "third");
    // a database and a table that move to another tablespace (movedb's FILE_COPY + DROP; a table's
    // pages logged anew under its new relfilenode)
    await sql("CREATE DATABASE moved");
    await sql("CREATE TABLE travels (id int PRIMARY KEY, v text); INSERT INTO travels SELECT g, md5(g::text) FROM generate_series(1, 1500) g", "moved");
    await sql("ALTER DATABASE moved SET TABLESPACE elsewhere");
    await sql("CREATE TABLE relocated AS SELECT generate_series(1, 4000) AS id");
    await sql("ALTER TABLE relocated SET TABLESPACE elsewhere");
    await sql("CREATE UNLOGGED TABLE scratch (k int PRIMARY KEY)");
    await sql("INSERT INTO scratch SELECT generate_series(1, 100)");
    // replication origins move in WAL: advanced (XLOG_REPLORIGIN_SET), by transactions applied
    // from them (commit and prepare records carry the origin's LSN), and dropped
    await sql("SELECT pg_replication_origin_advance('before_import', '0/6B6B6B')");
    await sql("SELECT pg_replication_origin_create('applied'); SELECT pg_replication_origin_session_setup('applied'); BEGIN; SELECT pg_replication_origin_xact_setup('0/7C7C7C', now()); INSERT INTO extra (v, n) VALUES ('applied from an origin', 7); COMMIT");
    await sql("SELECT pg_replication_origin_create('prepared'); SELECT pg_replication_origin_session_setup('prepared'); BEGIN; SELECT pg_replication_origin_xact_setup('0/8D8D8D', now()); INSERT INTO extra (v, n) VALUES ('prepared from an origin', 8); PREPARE TRANSACTION 'fb_origin'");
    await sql("COMMIT PREPARED 'fb_origin'");
    await sql("SELECT pg_replication_origin_create('gone'); SELECT pg_replication_origin_advance('gone', '0/1'); SELECT pg_replication_origin_drop('gone')");
    // more origins than PostgreSQL's default max_replication_slots (10) lets a server start with
    await sql("SELECT pg_replication_origin_create('bulk_' || g) FROM generate_series(1, 8) g; SELECT pg_replication_origin_advance('bulk_' || g, ('0/' || to_hex(g * 4096))::pg_lsn) FROM generate_series(1, 8) g");
    // a prepared transaction still pending at the backup LSN
    await sql("BEGIN; INSERT INTO extra (v, n) VALUES ('prepared', 42); PREPARE TRANSACTION 'fb_pending'");
    step("workload done");

    // what the primary has at the LSN: no writes after this point
    expected = await fingerprint(sql);
    expect(expected.origins).toEqual([
      { external_id: "applied", remote_lsn: "0/7C7C7C" },
      { external_id: "before_import", remote_lsn: "0/6B6B6B" },
      ...Array.from({ length: 8 }, (_, i) => ({ external_id: `bulk_${i + 1}`, remote_lsn: `0/${((i + 1) * 4096).toString(16).toUpperCase()}` })),
      { external_id: "imported_only", remote_lsn: "0/4A4A4A" },
      { external_id: "prepared", remote_lsn: "0/8D8D8D" },
    ]);
    const [{ xmax }] = await sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax");
    nextXidAtLsn = BigInt(xmax as string);
    const [{ lsn: insertLsn }] = await sql("SELECT pg_current_wal_insert_lsn()::text AS lsn");
    for (let i = 0; i < 400; i++) {
      const [{ done }] = await sql(`SELECT pg_current_wal_flush_lsn() >= '${insertLsn}'::pg_lsn AS done`);
      if (done) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const end = parseLsn(insertLsn as string);
    const ingestor = await TimelineIngestor.open(store);
    for (let pos = imported.startLsn; pos < end; ) {
      const next = pos + BigInt(Math.min(SEGMENT, Number(end - pos)));
      lsn = await ingestor.ingestWal(readWalRange(primary.walDir, pos, next), pos);
      pos = next;
    }
    step(`ingested to ${formatLsn(lsn)} (insert LSN ${insertLsn})`);
    expect(lsn).toBeGreaterThan(imported.endLsn);
    expect(lsn).toBeLessThanOrEqual(end);
    // the store has everything now: free the machine for the copies
    await primary.stop();
    primary = undefined;
  });

  afterAll(async () => {
    for (const copy of copies) if (copy.pid) await stopByPid(copy.pid);
    await store?.close();
    await primary?.stop();
    for (const copy of copies) rmSync(copy.base, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
    rmSync(outsideLocation, { recursive: true, force: true });
  });

  it("produces a data directory that stock PostgreSQL starts from without recovery, with the primary's data at the LSN", async () => {
    const progress: Array<[number, number]> = [];
    const { tarPath, result } = await backupTo("backup.tar", lsn, (bytes, total) => progress.push([bytes, total]));
    step(`backup written: ${result.bytes} bytes, ${result.files} files, checkpoint at ${formatLsn(result.checkpointLsn)}`);
    expect(result.checkpointLsn).toBe(lsn % 8192n === 0n ? lsn + (lsn % BigInt(SEGMENT) === 0n ? 40n : 24n) : lsn);
    expect(statSync(tarPath).size).toBe(result.bytes);
    expect(progress.at(-1)).toEqual([result.bytes, result.bytes]);
    expect(progress.every(([bytes, total], i) => total === result.bytes && (i === 0 || bytes >= progress[i - 1][0]))).toBe(true);

    // the control file and the synthesized WAL, as PostgreSQL's own tools read them
    const dataDir = path.join(work, "inspect");
    mkdirSync(dataDir, { mode: 0o700 });
    await execFileAsync("tar", ["-xf", tarPath, "-C", dataDir]);
    const { stdout: controldata } = await execFileAsync(pgBinary("pg_controldata"), ["-D", dataDir]);
    expect(controldata).toMatch(/Database cluster state:\s+shut down\n/);
    expect(/Latest checkpoint location:\s+(\S+)/.exec(controldata)?.[1]).toBe(formatLsn(result.checkpointLsn));
    expect(/Latest checkpoint's REDO location:\s+(\S+)/.exec(controldata)?.[1]).toBe(formatLsn(result.checkpointLsn));
    const segment = path.join(dataDir, "pg_wal", walFileName(1, result.checkpointLsn));
    const fromSegmentStart = await execFileAsync(pgBinary("pg_waldump"), ["-n", "1", segment]);
    // pg_waldump prints the record's own LSN with the low half zero-padded
    const [hi, lo] = formatLsn(result.checkpointLsn).split("/");
    expect(fromSegmentStart.stdout).toContain(`lsn: ${hi}/${lo.padStart(8, "0")},`);
    expect(fromSegmentStart.stdout).toContain(`CHECKPOINT_SHUTDOWN redo ${formatLsn(result.checkpointLsn)}`);
    const atLsn = await execFileAsync(pgBinary("pg_waldump"), ["-n", "1", "-s", formatLsn(result.checkpointLsn), segment]);
    expect(atLsn.stdout).toContain("CHECKPOINT_SHUTDOWN");
    // every page of every relation carries a valid data checksum
    await execFileAsync("chown", ["-R", "postgres:postgres", dataDir]);
    await runAsPostgres("pg_checksums", ["--check", "-D", dataDir]);
    step("pg_controldata, pg_waldump, pg_checksums ok");

    // every relation file holds getPage's pages (plus their checksums); the files come in the
    // order the store keeps the forks they are read from (one forward scan for all of them)
    const reader = new PageReader(store!);
    const forks = await reader.listRelations(lsn);
    const unlogged = new Set(forks.filter((f) => f.fork === ForkNumber.Init).map((f) => `${f.rel.dbNode}/${f.rel.relNode}`));
    const suffixes = ["", "_fsm", "_vm", "_init"];
    const planned: string[] = [];
    let pages = 0;
    for (const { rel, fork } of forks) {
      const isUnlogged = unlogged.has(`${rel.dbNode}/${rel.relNode}`);
      if (isUnlogged && fork !== ForkNumber.Init) continue;
      const n = (await reader.relSize(rel, fork, lsn)) ?? 0;
      for (const target of isUnlogged ? [ForkNumber.Init, ForkNumber.Main] : [fork]) {
        const dir = rel.spcNode === 1664 ? "global" : rel.spcNode === 1663 ? `base/${rel.dbNode}` : `pg_tblspc/${rel.spcNode}/PG_15_202209061/${rel.dbNode}`;
        const name = `${dir}/${rel.relNode}${suffixes[target]}`;
        planned.push(name);
        const file = readFileSync(path.join(dataDir, name));
        expect(file.length, name).toBe(n * 8192);
        for (let b = 0; b < n; b++) {
          const expected = Buffer.from(await reader.getPage(rel, fork, b, lsn));
          setPageChecksum(expected, b);
          if (!file.subarray(b * 8192, (b + 1) * 8192).equals(expected)) expect.fail(`${name} block ${b} differs from getPage`);
          pages++;
        }
      }
    }
    expect(pages).toBe(result.relationPages);
    const { stdout: members } = await execFileAsync("tar", ["-tf", tarPath], { maxBuffer: 64 * 1024 * 1024 });
    const relationFiles = members.split("\n").filter((m) => /^(global|base\/\d+|pg_tblspc\/\d+\/PG_15_\d+\/\d+)\/\d+(_fsm|_vm|_init)?$/.test(m));
    expect(relationFiles).toEqual(planned);
    expect(unlogged.size).toBeGreaterThan(0);
    step(`${pages} relation pages equal getPage`);

    const copy = await startCopy(tarPath);
    step("copy started");
    expectCleanStart(copy);
    const sql = copy.sql;
    expect(await fingerprint(sql)).toEqual(expected);
    expect(expected.accounts.n).toBe(100000);
    expect((await sql("SELECT datname FROM pg_database ORDER BY datname")).map((r) => r.datname)).toEqual(["moved", "postgres", "second", "template0", "template1", "third"]);
    // the user tablespace came back in place: inside the data directory, with its relations
    expect(expected.spaced.n).toBe(3000);
    expect(await sql("SELECT spcname, pg_tablespace_location(oid) LIKE 'pg_tblspc/%' AS in_place FROM pg_tablespace WHERE spcname = 'elsewhere'")).toEqual([{ spcname: "elsewhere", in_place: true }]);
    expect(await sql("SELECT count(*)::int AS n FROM spaced WHERE h = md5('1234')")).toEqual([{ n: 1 }]);
    await sql("INSERT INTO spaced SELECT g, md5(g::text) FROM generate_series(3001, 3100) g");
    await sql("INSERT INTO things SELECT generate_series(501, 600)", "third");
    // the tablespace that was empty at the backup LSN has its directory, and takes relations
    await sql("CREATE TABLE later TABLESPACE unused AS SELECT g AS id FROM generate_series(1, 10) g");
    expect(await sql("SELECT count(*)::int AS n FROM later")).toEqual([{ n: 10 }]);
    expect((await sql("SELECT spcname FROM pg_tablespace WHERE spcname NOT LIKE 'pg_%' ORDER BY spcname")).map((r) => r.spcname)).toEqual(["elsewhere", "in_place", "outside", "outside_empty", "unused"]);
    // the imported tablespaces: data, in place now, and one that was empty at the import takes relations
    expect([expected.outside.n, expected.inPlace.n]).toEqual([2000, 700]);
    expect(await sql("SELECT count(*)::int AS n FROM pg_tablespace WHERE spcname LIKE 'outside%' AND pg_tablespace_location(oid) LIKE 'pg_tblspc/%'")).toEqual([{ n: 2 }]);
    await sql("CREATE TABLE into_empty TABLESPACE outside_empty AS SELECT 1 AS one");
    // the unlogged table comes back empty (its main fork is a copy of its init fork)
    expect(await sql("SELECT count(*)::int AS n FROM scratch")).toEqual([{ n: 0 }]);

    // the prepared transaction survived and can be finished
    expect(await sql("SELECT gid FROM pg_prepared_xacts")).toEqual([{ gid: "fb_pending" }]);
    await sql("COMMIT PREPARED 'fb_pending'");
    expect(await sql("SELECT count(*)::int AS n FROM extra WHERE v = 'prepared'")).toEqual([{ n: 1 }]);

    // new transactions get xids past everything the primary had assigned; new relations work
    const [{ xid }] = await sql("SELECT txid_current()::text AS xid");
    expect(BigInt(xid as string)).toBeGreaterThanOrEqual(nextXidAtLsn);
    await sql("CREATE TABLE fresh AS SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 1000) g");
    await sql("CREATE INDEX fresh_h ON fresh (h)");
    await sql("INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 5, now())");
    expect(await sql("SELECT count(*)::int AS n FROM fresh WHERE h = md5('500')")).toEqual([{ n: 1 }]);
    await sql("CREATE TABLE more_items AS SELECT * FROM items", "second");

    const amcheck = await execFileAsync(pgBinary("pg_amcheck"), ["-h", "127.0.0.1", "-p", String(copy.port), "-U", "postgres", "--all", "--heapallindexed", "--install-missing"]);
    expect(amcheck.stdout + amcheck.stderr).toBe("");
    // it really ran in both databases (it installed amcheck there to check them)
    for (const db of ["postgres", "second", "third"]) expect(await sql("SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'amcheck'", db)).toEqual([{ n: 1 }]);
    await sql("CHECKPOINT");
    step("copy verified");
  });

  it("starts PostgreSQL when the checkpoint record lands on a page start, straddles pages, or straddles segments", async () => {
    // any LSN at or after the last record is a valid backup point with the same content
    const page = 8192n;
    const nextPage = lsn - (lsn % page) + page;
    const segEnd = lsn - (lsn % BigInt(SEGMENT)) + BigInt(SEGMENT);
    const cases = [
      { name: "page start", at: nextPage, checkpoint: nextPage + (nextPage % BigInt(SEGMENT) === 0n ? 40n : 24n) },
      { name: "straddles pages", at: nextPage + page - 48n, checkpoint: nextPage + page - 48n },
      { name: "straddles segments", at: segEnd - 16n, checkpoint: segEnd - 16n },
    ];
    for (const c of cases) {
      const { tarPath, result } = await backupTo(`${c.name.replace(/ /g, "-")}.tar`, c.at);
      expect(result.checkpointLsn).toBe(c.checkpoint);
      const copy = await startCopy(tarPath);
      expectCleanStart(copy);
      expect(await copy.sql("SELECT count(*)::int AS n FROM pgbench_accounts")).toEqual([{ n: 100000 }]);
      // the server keeps writing WAL right after the synthesized record
      await copy.sql("INSERT INTO extra (v, n) VALUES ('after', 1)");
      const [{ flushed }] = await copy.sql("SELECT pg_current_wal_flush_lsn()::text AS flushed");
      // the segments named: pg_waldump otherwise takes the segment size from whichever file it lists
      // first, and a segment PostgreSQL preallocated (zeros) has none
      const dump = await execFileAsync(pgBinary("pg_waldump"), ["-p", path.join(copy.dataDir, "pg_wal"), "-s", formatLsn(result.checkpointLsn), "-e", flushed as string, walFileName(1, result.checkpointLsn), walFileName(1, parseLsn(flushed as string) - 1n)]);
      expect(dump.stdout).toContain(`CHECKPOINT_SHUTDOWN redo ${formatLsn(result.checkpointLsn)}`);
      expect(dump.stdout).toMatch(/desc: COMMIT/);
      await copy.sql("CHECKPOINT");
      const record = copies.at(-1)!;
      await stopByPid(record.pid);
      record.pid = 0;
      step(`${c.name}: checkpoint at ${formatLsn(result.checkpointLsn)} ok`);
    }
  });
});

function mkdtempWork(): string {
  const dir = path.join(os.tmpdir(), `strata-fullbackup-${process.pid}-${Date.now()}`);
  mkdirSync(dir);
  return dir;
}
