// Initial import: runs BASE_BACKUP (PG15 option syntax, one COPY stream whose CopyData messages carry
// a type byte: 'n' new archive, 'd' data, 'p' progress, 'm' manifest) and feeds the main data
// directory's tar archive to a per-file callback chunk by chunk, so memory stays bounded by the
// socket high-water mark no matter how large the relations are. Returns the WAL range that redo
// must cover (startLsn..endLsn) for the copied files to be consistent.
import { parseLsn, type Lsn } from "../lsn.ts";
import type { QueryResult, ReplicationConnection } from "./connection.ts";
import { parseServerFields, PrimaryError } from "./errors.ts";
import { BodyReader, message, ProtocolViolation, type Frame } from "./protocol.ts";
import { readTar, type TarEntry } from "./tar.ts";

export type BackupEntry = TarEntry;

export interface TablespaceInfo {
  /** null for the main data directory (pg_default/pg_global). */
  oid: number | null;
  location: string | null;
  /** Estimated size in bytes (only with progress reporting). */
  size: number | null;
}

export interface BaseBackupOptions {
  label?: string;
  /** CHECKPOINT 'fast' (default true) instead of a spread checkpoint. */
  fast?: boolean;
  /** Also ask the server for a size estimate; called with bytes sent so far and the estimate. */
  onProgress?: (bytesDone: number, totalEstimate: number | null) => void;
  /**
   * Tablespaces outside the data directory: 'error' (default) fails before any file is streamed;
   * 'skip' streams only the main data directory (pg_tblspc symlinks are still reported);
   * 'include' streams their archives too, each entry's path prefixed with `pg_tblspc/<oid>/`
   * (where PostgreSQL reaches it from the data directory).
   */
  otherTablespaces?: "error" | "skip" | "include";
  /** MAX_RATE in kB/s. */
  maxRateKbps?: number;
  verifyChecksums?: boolean;
  /** Called with the backup's start position before any file is streamed. */
  onStart?: (startLsn: Lsn, timeline: number) => void;
}

export interface BaseBackupResult {
  /** Redo start of the backup checkpoint: WAL must be replayed from here… */
  startLsn: Lsn;
  timeline: number;
  /** …to here for the copied files to be consistent. */
  endLsn: Lsn;
  endTimeline: number;
  tablespaces: TablespaceInfo[];
  /** Archive bytes received for the main data directory. */
  bytes: number;
}

export type BackupFileHandler = (entry: BackupEntry, body: AsyncIterable<Buffer>) => Promise<void>;

export class UnsupportedTablespaceError extends Error {
  override readonly name = "UnsupportedTablespaceError";
  constructor(readonly tablespaces: TablespaceInfo[]) {
    super(
      `primary has tablespaces outside the data directory (${tablespaces.map((t) => `oid ${t.oid} at ${t.location}`).join(", ")}); ` +
        `only the default tablespace is supported (pass otherTablespaces: 'skip' to import without them)`,
    );
  }
}

/**
 * Streams a base backup. `onFile` is called once per archive entry, in archive order; its `body`
 * must be consumed (or ignored) before the returned promise settles. On any failure the connection
 * is closed, because an unfinished COPY cannot be abandoned on the wire.
 */
export async function baseBackup(conn: ReplicationConnection, options: BaseBackupOptions, onFile: BackupFileHandler): Promise<BaseBackupResult> {
  const opts = [`LABEL '${(options.label ?? "strata").replace(/'/g, "''")}'`, `CHECKPOINT '${options.fast === false ? "spread" : "fast"}'`, "WAL false", "MANIFEST 'no'", "TARGET 'client'"];
  if (options.onProgress) opts.push("PROGRESS true");
  if (options.maxRateKbps) opts.push(`MAX_RATE ${Math.floor(options.maxRateKbps)}`);
  if (options.verifyChecksums !== undefined) opts.push(`VERIFY_CHECKSUMS ${options.verifyChecksums}`);
  const sql = `BASE_BACKUP (${opts.join(", ")})`;

  conn.acquire("BASE_BACKUP");
  let ok = false;
  try {
    conn.write(message("Q").cstring(sql).end());
    // Before the COPY: the start position, then the tablespace list, then CopyOutResponse.
    const before = await conn.readResults(sql, "H");
    const start = positionOf(before[0], "start");
    options.onStart?.(start.lsn, start.tli);
    const tablespaces = tablespacesOf(before[1]);
    const others = tablespaces.filter((t) => t.oid !== null);
    if (others.length > 0 && (options.otherTablespaces ?? "error") === "error") throw new UnsupportedTablespaceError(others);
    const totalEstimate = tablespaces.reduce<number | null>((sum, t) => (t.size === null ? sum : (sum ?? 0) + t.size), null);

    const copy = new CopyStream(conn, (done) => options.onProgress?.(done, totalEstimate));
    let bytes = 0;
    for (;;) {
      const event = await copy.nextEvent();
      if (event.kind === "end") break;
      const readChunk = async () => {
        const chunk = await copy.archiveChunk();
        if (chunk) bytes += chunk.length;
        return chunk;
      };
      if (event.kind === "archive" && event.tablespacePath === "") await readTar(readChunk, onFile);
      else if (event.kind === "archive" && options.otherTablespaces === "include") {
        const oid = tablespaceOid(event, tablespaces);
        await readTar(readChunk, (entry, body) => onFile({ ...entry, path: `pg_tblspc/${oid}/${entry.path.replace(/^\.\//, "")}` }, body));
      }
      // Archives of other tablespaces and the manifest: skipped chunk by chunk.
      while ((await copy.archiveChunk()) !== null) {}
    }
    const after = await conn.readResults(`end of ${sql}`);
    const end = positionOf(after.find((r) => r.columns.includes("recptr")), "end");
    ok = true;
    return { startLsn: start.lsn, timeline: start.tli, endLsn: end.lsn, endTimeline: end.tli, tablespaces, bytes };
  } finally {
    if (ok) conn.release();
    else conn.destroy();
  }
}

type CopyEvent = { kind: "archive"; name: string; tablespacePath: string } | { kind: "manifest" } | { kind: "end" };

/** The single COPY OUT of a PG15 BASE_BACKUP, read one CopyData message at a time. */
class CopyStream {
  private pending: Frame | null = null;
  private inPayload = false;

  constructor(
    private readonly conn: ReplicationConnection,
    private readonly onProgress: (bytesDone: number) => void,
  ) {}

  /** The next archive/manifest start or the end of the COPY. */
  async nextEvent(): Promise<CopyEvent> {
    for (;;) {
      const frame = this.pending ?? (await this.read());
      this.pending = null;
      if (frame.type === "c") return { kind: "end" };
      const r = new BodyReader(frame.body);
      const kind = r.char();
      if (kind === "n") {
        this.inPayload = true;
        return { kind: "archive", name: r.cstring(), tablespacePath: r.cstring() };
      }
      if (kind === "m") {
        this.inPayload = true;
        return { kind: "manifest" };
      }
      if (kind === "p") this.onProgress(Number(r.uint64()));
      else if (kind !== "d") throw new ProtocolViolation(`unknown BASE_BACKUP CopyData type "${kind}"`);
    }
  }

  /** The next data chunk of the current archive/manifest, or null when it has ended. */
  async archiveChunk(): Promise<Buffer | null> {
    if (!this.inPayload) return null;
    for (;;) {
      const frame = await this.read();
      if (frame.type === "d") {
        const kind = frame.body[0];
        if (kind === 0x64 /* d */) return frame.body.subarray(1);
        if (kind === 0x70 /* p */) {
          this.onProgress(Number(frame.body.readBigUInt64BE(1)));
          continue;
        }
      }
      this.pending = frame;
      this.inPayload = false;
      return null;
    }
  }

  private async read(): Promise<Frame> {
    const frame = await this.conn.readFrame();
    if (frame.type === "d" || frame.type === "c") return frame;
    if (frame.type === "E") {
      const err = new PrimaryError(parseServerFields(frame.body), "BASE_BACKUP failed");
      throw err;
    }
    throw new ProtocolViolation(`unexpected message "${frame.type}" during BASE_BACKUP copy`);
  }
}

function positionOf(result: QueryResult | undefined, which: string): { lsn: Lsn; tli: number } {
  const row = result?.rows[0];
  if (!result || !row) throw new ProtocolViolation(`BASE_BACKUP sent no ${which} position`);
  const lsn = row[result.columns.indexOf("recptr")];
  const tli = row[result.columns.indexOf("tli")];
  if (!lsn || !tli) throw new ProtocolViolation(`BASE_BACKUP ${which} position is incomplete`);
  return { lsn: parseLsn(lsn), tli: Number(tli) };
}

/** The oid of the tablespace an archive holds: the one listed at its location, else its name's (`<oid>.tar`). */
function tablespaceOid(event: { name: string; tablespacePath: string }, tablespaces: TablespaceInfo[]): number {
  const listed = tablespaces.find((t) => t.oid !== null && t.location === event.tablespacePath);
  if (listed) return listed.oid!;
  const m = /^(\d+)\.tar/.exec(event.name);
  if (m) return Number(m[1]);
  throw new ProtocolViolation(`BASE_BACKUP archive "${event.name}" at ${event.tablespacePath} matches no listed tablespace`);
}

function tablespacesOf(result: QueryResult | undefined): TablespaceInfo[] {
  if (!result) throw new ProtocolViolation("BASE_BACKUP sent no tablespace list");
  const col = (name: string) => result.columns.indexOf(name);
  return result.rows.map((row) => ({
    oid: row[col("spcoid")] ? Number(row[col("spcoid")]) : null,
    location: row[col("spclocation")] ?? null,
    // The server reports kB, and -1 or NULL without PROGRESS.
    size: col("size") >= 0 && row[col("size")] !== null && Number(row[col("size")]) >= 0 ? Number(row[col("size")]) * 1024 : null,
  }));
}
