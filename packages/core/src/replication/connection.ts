// A physical-replication connection to the primary on raw node:net: startup with replication=true,
// trust/cleartext/md5/SCRAM-SHA-256 auth, simple queries and the replication commands
// (IDENTIFY_SYSTEM, slots, SHOW). startReplication (stream.ts) and baseBackup (basebackup.ts) take
// the connection over for their COPY phase. Socket reads are flow-controlled: the socket is paused
// while more than `highWaterMark` bytes sit unread, so a slow consumer bounds memory.
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { parseLsn, type Lsn } from "../lsn.ts";
import { md5PasswordResponse, SCRAM_MECHANISM, ScramSession } from "./auth.ts";
import { parseServerFields, PrimaryConnectError, PrimaryError } from "./errors.ts";
import { FrameReceiver } from "./frame-receiver.ts";
import { BodyReader, message, parseDataRow, parseRowDescription, ProtocolViolation, type Frame } from "./protocol.ts";
import { startReplication, type ReplicationStream, type StartReplicationOptions } from "./stream.ts";
import { negotiateTls, type SslMode, type TlsOptions } from "./tls.ts";

export interface PrimaryTarget {
  host: string;
  port?: number;
  user?: string;
  password?: string;
  /** Ignored by a physical walsender, but sent if given. */
  database?: string;
  /** TLS as libpq's sslmode asks for it (tls.ts); none when absent */
  ssl?: TlsOptions;
}

export interface ConnectOptions {
  applicationName?: string;
  /** Give up connecting (TCP + startup + auth) after this long. Default 10 s. */
  connectTimeoutMs?: number;
  /** Pause the socket while this many received bytes are unread. Default 1 MiB. */
  highWaterMark?: number;
  /** Called for NoticeResponse messages (e.g. warnings during BASE_BACKUP). */
  onNotice?: (fields: Record<string, string>) => void;
}

export interface QueryResult {
  /** Command tag from CommandComplete, e.g. "SELECT", "IDENTIFY_SYSTEM", "SHOW". */
  command: string;
  columns: string[];
  rows: (string | null)[][];
}

export interface SystemIdentity {
  /** Database system identifier (uint64, as decimal text). */
  systemId: string;
  timeline: number;
  /** The primary's current WAL flush position. */
  xlogPos: Lsn;
  /** Always null on a physical replication connection. */
  dbName: string | null;
}

export interface ReplicationSlotInfo {
  slotName: string;
  slotType: string;
  restartLsn: Lsn | null;
  restartTimeline: number | null;
}

const PROTOCOL_VERSION_3 = 196608;
const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

export class ReplicationConnection {
  /** ParameterStatus values reported by the server (server_version, integer_datetimes, …). */
  readonly parameters = new Map<string, string>();
  backendPid = 0;
  /** How the server authenticated us. */
  authMethod: "trust" | "password" | "md5" | "scram-sha-256" = "trust";

  private wake: (() => void) | null = null;
  private closedError: Error | null = null;
  private paused = false;
  /** while streaming WAL: how long to leave the socket unread after a read that emptied it */
  private liveReadWaitMs = 0;
  private readWait: NodeJS.Timeout | undefined;
  private busyWith: string | null = null;
  private readonly highWaterMark: number;

  private constructor(
    private readonly socket: net.Socket,
    private readonly reader: FrameReceiver,
    readonly host: string,
    readonly port: number,
    readonly user: string,
    private readonly options: ConnectOptions,
  ) {
    this.highWaterMark = options.highWaterMark ?? 1 << 20;
    socket.setNoDelay(true);
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.closedError ??= new PrimaryConnectError(`connection to primary at ${this.address} failed: ${err.message}`, err.code, { cause: err });
      this.notify();
    });
    socket.on("close", () => {
      clearTimeout(this.readWait);
      this.closedError ??= new PrimaryConnectError(`connection to primary at ${this.address} was closed by the server`);
      this.notify();
    });
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** True once the socket has closed or failed. */
  get isClosed(): boolean {
    return this.closedError !== null;
  }

  static async connect(target: string | PrimaryTarget, options: ConnectOptions = {}): Promise<ReplicationConnection> {
    const t = typeof target === "string" ? parsePostgresUrl(target) : target;
    const host = t.host || "localhost";
    const port = t.port ?? 5432;
    const user = t.user ?? process.env.PGUSER ?? "postgres";
    const timeoutMs = options.connectTimeoutMs ?? 10_000;

    let conn: ReplicationConnection | undefined;
    const reader = new FrameReceiver(
      () => conn?.notify(),
      () => {},
    );
    // socket reads land in one reused buffer (or TLS's chunks); frames are copied out of it (FrameReceiver)
    const socket = await openSocket(host, port, timeoutMs, (n, buf) => {
      try {
        reader.receive(buf, 0, n, () => {});
      } catch (err) {
        conn?.fail(err as Error);
        return false;
      }
      // flow control: stop reading while the consumer is far behind
      if (conn && !conn.paused && reader.bufferedBytes > conn.highWaterMark) {
        conn.paused = true;
        return false;
      }
      return conn ? conn.readOnAfter(n) : true;
    }, t.ssl);
    conn = new ReplicationConnection(socket, reader, host, port, user, options);
    const timer = setTimeout(() => {
      conn.closedError ??= new PrimaryConnectError(`cannot connect to primary at ${host}:${port}: startup timed out after ${timeoutMs} ms`, "ETIMEDOUT");
      socket.destroy();
      conn.notify();
    }, timeoutMs);
    try {
      await conn.startup(t.password, t.database, options.applicationName);
    } catch (err) {
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return conn;
  }

  private async startup(password: string | undefined, database: string | undefined, applicationName: string | undefined) {
    const startup = message().int32(PROTOCOL_VERSION_3).cstring("user").cstring(this.user);
    if (database) startup.cstring("database").cstring(database);
    startup.cstring("replication").cstring("true");
    if (applicationName) startup.cstring("application_name").cstring(applicationName);
    this.write(startup.int8(0).end());

    let scram: ScramSession | null = null;
    for (;;) {
      const frame = await this.readFrame();
      const r = new BodyReader(frame.body);
      switch (frame.type) {
        case "R": {
          const kind = r.int32();
          if (kind === 0) break; // AuthenticationOk
          if (kind === 3) {
            this.authMethod = "password";
            this.write(message("p").cstring(this.requirePassword(password, "cleartext")).end());
          } else if (kind === 5) {
            const salt = r.bytes(4);
            this.authMethod = "md5";
            this.write(message("p").cstring(md5PasswordResponse(this.user, this.requirePassword(password, "md5"), salt)).end());
          } else if (kind === 10) {
            const mechanisms: string[] = [];
            for (let m = r.cstring(); m !== ""; m = r.cstring()) mechanisms.push(m);
            if (!mechanisms.includes(SCRAM_MECHANISM)) {
              throw new PrimaryConnectError(`primary at ${this.address} offers no supported SASL mechanism (got ${mechanisms.join(", ")})`);
            }
            scram = new ScramSession(this.requirePassword(password, "SCRAM-SHA-256"));
            this.authMethod = "scram-sha-256";
            const first = Buffer.from(scram.clientFirst());
            this.write(message("p").cstring(SCRAM_MECHANISM).int32(first.length).bytes(first).end());
          } else if (kind === 11) {
            if (!scram) throw new ProtocolViolation("SASLContinue without SASL start");
            this.write(message("p").bytes(Buffer.from(scram.clientFinal(r.rest().toString("utf8")))).end());
          } else if (kind === 12) {
            if (!scram) throw new ProtocolViolation("SASLFinal without SASL start");
            scram.verifyServerFinal(r.rest().toString("utf8"));
          } else {
            throw new PrimaryConnectError(`primary at ${this.address} asks for unsupported authentication method (code ${kind}; supported: trust, password, md5, scram-sha-256)`);
          }
          break;
        }
        case "K":
          this.backendPid = r.int32();
          break;
        case "E":
          throw startupError(parseServerFields(frame.body));
        case "Z":
          return;
        default:
          throw new ProtocolViolation(`unexpected message "${frame.type}" during startup`);
      }
    }
  }

  private requirePassword(password: string | undefined, method: string): string {
    if (password === undefined) {
      throw new PrimaryConnectError(`primary at ${this.address} requires ${method} password authentication for user "${this.user}", but no password was given`);
    }
    return password;
  }

  // ---- low-level access shared with stream.ts and basebackup.ts -------------------------------

  /** @internal Writes raw protocol bytes. Returns false if the socket is already gone. */
  write(bytes: Buffer): boolean {
    if (this.closedError || this.socket.destroyed) return false;
    this.socket.write(bytes);
    return true;
  }

  /**
   * @internal The next frame from the server, skipping NoticeResponse/ParameterStatus/
   * NotificationResponse. Waits for data; rejects once the socket is closed and drained.
   */
  async readFrame(): Promise<Frame> {
    for (;;) {
      const frame = this.nextBuffered();
      if (frame) return frame;
      if (this.closedError) throw this.closedError;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  /**
   * @internal While a WAL stream is live, reads are batched: after a read that found less than
   * half a read buffer waiting (the sender is not ahead of us), the socket is left unread for `ms`
   * and whatever arrived meanwhile is taken in one read. Under pgbench a primary sends thousands
   * of small messages a second; waking for each one cost the pageserver CPU and, worse, took a
   * core from the primary's backends at every message, which cost them more than the CPU used.
   * A catch-up reads full buffers and never waits. 0 turns it off (the stream ended). Not over
   * TLS, whose socket hands out one decrypted record (16 KiB) at a time.
   */
  batchLiveReads(ms: number): void {
    this.liveReadWaitMs = this.socket instanceof tls.TLSSocket ? 0 : ms;
    if (ms === 0 && this.readWait) this.resumeReading();
  }

  /** @internal After a socket read of `n` bytes (flow control passed): false pauses reading. */
  readOnAfter(n: number): boolean {
    if (this.liveReadWaitMs === 0 || n >= READ_BUFFER_BYTES / 2 || this.readWait || this.closedError) return true;
    this.readWait = setTimeout(() => this.resumeReading(), this.liveReadWaitMs);
    return false;
  }

  private resumeReading(): void {
    clearTimeout(this.readWait);
    this.readWait = undefined;
    if (!this.paused && !this.closedError) this.socket.resume();
  }

  /** @internal A frame already received, without waiting (undefined if none). */
  nextBuffered(): Frame | undefined {
    for (;;) {
      const frame = this.reader.next();
      if (this.paused && this.reader.bufferedBytes < this.highWaterMark / 4) {
        this.paused = false;
        if (!this.readWait) this.socket.resume();
      }
      if (!frame) return undefined;
      if (frame.type === "N") {
        this.options.onNotice?.(parseServerFields(frame.body));
      } else if (frame.type === "S") {
        const r = new BodyReader(frame.body);
        const name = r.cstring();
        this.parameters.set(name, r.cstring());
      } else if (frame.type !== "A") {
        return frame;
      }
    }
  }

  /** @internal The closing error if the socket is gone. */
  get closeReason(): Error | null {
    return this.closedError;
  }

  /** @internal Marks the connection as taken by a multi-message operation (COPY). */
  acquire(what: string): void {
    if (this.closedError) throw this.closedError;
    if (this.busyWith) throw new Error(`replication connection is busy with ${this.busyWith}; cannot start ${what}`);
    this.busyWith = what;
  }

  /** @internal */
  release(): void {
    this.busyWith = null;
    this.batchLiveReads(0);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The stream from the server is broken (a frame that cannot be parsed): readers get `err`. */
  private fail(err: Error): void {
    this.closedError ??= err;
    this.socket.destroy();
    this.notify();
  }

  // ---- simple query ---------------------------------------------------------------------------

  /** Runs a simple query (replication commands included) and returns every result set. */
  async queryAll(sql: string): Promise<QueryResult[]> {
    this.acquire(`query "${sql}"`);
    try {
      this.write(message("Q").cstring(sql).end());
      return await this.readResults(sql);
    } finally {
      this.release();
    }
  }

  /** Runs a simple query and returns its last result that has columns (or the last result). */
  async query(sql: string): Promise<QueryResult> {
    const results = await this.queryAll(sql);
    const withRows = results.filter((r) => r.columns.length > 0);
    return withRows[withRows.length - 1] ?? results[results.length - 1] ?? { command: "", columns: [], rows: [] };
  }

  /**
   * @internal Reads result sets up to ReadyForQuery (or up to a frame of type `until`, e.g. a
   * CopyOutResponse, which is consumed); throws the first ErrorResponse once ReadyForQuery is read.
   */
  async readResults(what: string, until?: string): Promise<QueryResult[]> {
    const results: QueryResult[] = [];
    let current: QueryResult | null = null;
    let error: PrimaryError | null = null;
    for (;;) {
      const frame = await this.readFrame();
      if (frame.type === until && !error) return results;
      switch (frame.type) {
        case "T":
          current = { command: "", columns: parseRowDescription(frame.body), rows: [] };
          break;
        case "D":
          if (!current) throw new ProtocolViolation("DataRow without RowDescription");
          current.rows.push(parseDataRow(frame.body));
          break;
        case "C": {
          const tag = new BodyReader(frame.body).cstring();
          if (current) {
            current.command = tag;
            results.push(current);
          } else {
            results.push({ command: tag, columns: [], rows: [] });
          }
          current = null;
          break;
        }
        case "I":
          break;
        case "E":
          error ??= new PrimaryError(parseServerFields(frame.body));
          break;
        case "Z":
          if (error) throw error;
          return results;
        default:
          throw new ProtocolViolation(`unexpected message "${frame.type}" in reply to ${what}`);
      }
    }
  }

  // ---- replication commands -------------------------------------------------------------------

  async identifySystem(): Promise<SystemIdentity> {
    const row = singleRow(await this.query("IDENTIFY_SYSTEM"), "IDENTIFY_SYSTEM");
    return {
      systemId: row.get("systemid") ?? "",
      timeline: Number(row.get("timeline")),
      xlogPos: parseLsn(row.get("xlogpos") ?? "0/0"),
      dbName: row.get("dbname") ?? null,
    };
  }

  /** TIMELINE_HISTORY: the content of the server's history file for `timeline` (there is none for timeline 1). */
  async timelineHistory(timeline: number): Promise<string> {
    if (!Number.isInteger(timeline) || timeline < 2) throw new RangeError(`timeline ${timeline} has no history file`);
    return singleRow(await this.query(`TIMELINE_HISTORY ${timeline}`), "TIMELINE_HISTORY").get("content") ?? "";
  }

  /** SHOW works on replication connections, e.g. showSetting("wal_level"). */
  async showSetting(name: string): Promise<string> {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name)) throw new RangeError(`invalid setting name "${name}"`);
    const result = await this.query(`SHOW ${name}`);
    return result.rows[0]?.[0] ?? "";
  }

  /** CREATE_REPLICATION_SLOT … PHYSICAL [RESERVE_WAL]; returns the slot as READ_REPLICATION_SLOT sees it. */
  async createPhysicalSlot(name: string, options: { reserveWal?: boolean; temporary?: boolean } = {}): Promise<ReplicationSlotInfo> {
    checkSlotName(name);
    const reserve = options.reserveWal ?? true;
    await this.query(`CREATE_REPLICATION_SLOT ${name}${options.temporary ? " TEMPORARY" : ""} PHYSICAL${reserve ? " RESERVE_WAL" : ""}`);
    const info = await this.readReplicationSlot(name);
    if (!info) throw new Error(`replication slot "${name}" was created but cannot be read back`);
    return info;
  }

  /** Creates the slot unless it exists (SQLSTATE 42710 is fine); returns it and whether it was created. */
  async ensurePhysicalSlot(name: string, options: { reserveWal?: boolean } = {}): Promise<ReplicationSlotInfo & { created: boolean }> {
    try {
      return { ...(await this.createPhysicalSlot(name, options)), created: true };
    } catch (err) {
      if (!(err instanceof PrimaryError && err.code === "42710")) throw err;
    }
    const info = await this.readReplicationSlot(name);
    if (!info) throw new Error(`replication slot "${name}" exists but cannot be read`);
    if (info.slotType !== "physical") throw new Error(`replication slot "${name}" exists but is ${info.slotType}, not physical`);
    return { ...info, created: false };
  }

  /** READ_REPLICATION_SLOT (PG15+); null if there is no such slot. */
  async readReplicationSlot(name: string): Promise<ReplicationSlotInfo | null> {
    checkSlotName(name);
    const row = singleRow(await this.query(`READ_REPLICATION_SLOT ${name}`), "READ_REPLICATION_SLOT");
    const type = row.get("slot_type");
    if (type === null || type === undefined) return null;
    const restart = row.get("restart_lsn");
    const tli = row.get("restart_tli");
    return {
      slotName: name,
      slotType: type,
      restartLsn: restart ? parseLsn(restart) : null,
      restartTimeline: tli ? Number(tli) : null,
    };
  }

  async dropSlot(name: string, options: { wait?: boolean } = {}): Promise<void> {
    checkSlotName(name);
    await this.query(`DROP_REPLICATION_SLOT ${name}${options.wait ? " WAIT" : ""}`);
  }

  /** START_REPLICATION: enters CopyBoth and returns the WAL stream (see stream.ts). */
  startReplication(options: StartReplicationOptions): Promise<ReplicationStream> {
    return startReplication(this, options);
  }

  /** Sends Terminate and closes the socket. Safe to call twice. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    const closed = new Promise<void>((resolve) => this.socket.once("close", () => resolve()));
    if (!this.closedError) this.socket.end(message("X").end());
    const timer = setTimeout(() => this.socket.destroy(), 2000);
    this.socket.resume();
    await closed;
    clearTimeout(timer);
    this.closedError ??= new PrimaryConnectError(`connection to primary at ${this.address} was closed by the client`);
  }

  /** Drops the socket immediately (used when abandoning a COPY midway). */
  destroy(): void {
    this.closedError ??= new PrimaryConnectError(`connection to primary at ${this.address} was closed by the client`);
    this.socket.destroy();
    this.notify();
  }
}

function checkSlotName(name: string): void {
  if (!SLOT_NAME.test(name)) throw new RangeError(`invalid replication slot name "${name}": use lower-case letters, digits and underscores`);
}

function singleRow(result: QueryResult, what: string): Map<string, string | null> {
  const row = result.rows[0];
  if (!row) throw new ProtocolViolation(`${what} returned no row`);
  return new Map(result.columns.map((c, i) => [c, row[i]]));
}

/** Rewords startup ErrorResponses whose server text alone doesn't say "no replication here". */
function startupError(fields: Record<string, string>): PrimaryError {
  const msg = fields.M ?? "";
  if (fields.C === "53300" && /max_wal_senders \(currently 0\)/.test(msg)) {
    return new PrimaryError(fields, "primary does not allow replication connections (max_wal_senders = 0; it needs wal_level = replica or logical and max_wal_senders > 0)");
  }
  if (fields.C === "53300" && /max_wal_senders/.test(msg)) {
    return new PrimaryError(fields, "primary has no free walsender slot");
  }
  if (fields.C === "28000" && /replication connection/.test(msg)) {
    return new PrimaryError(fields, "primary does not allow replication connections from this host/user (pg_hba.conf needs a `replication` line)");
  }
  return new PrimaryError(fields);
}

/**
 * A postgres:// (or postgresql://) URL as libpq reads it, including one without a host before the
 * path (`postgresql://user@/db?host=/var/run/postgresql`), which WHATWG URLs reject. A host that
 * is an absolute path is the directory of the server's Unix socket.
 */
export function parsePostgresUrl(url: string): PrimaryTarget {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new RangeError(`not a postgres:// URL: ${url}`);
  let u: URL;
  let hostless = false;
  try {
    u = new URL(url);
  } catch {
    // an empty host: parse with a placeholder, then take the host from the parameters
    const withHost = url.replace(/^(postgres(?:ql)?:\/\/(?:[^/?#@]*@)?)(?=[/?#]|$)/, "$1placeholder");
    try {
      u = new URL(withHost);
    } catch {
      throw new RangeError(`not a valid postgres:// URL: ${url}`);
    }
    hostless = withHost !== url;
    if (!hostless) throw new RangeError(`not a valid postgres:// URL: ${url}`);
  }
  const port = u.port ? Number(u.port) : u.searchParams.get("port") ? Number(u.searchParams.get("port")) : undefined;
  // no sslmode: plaintext (unlike libpq's default, prefer: WAL is not encrypted unless asked)
  const sslmode = u.searchParams.get("sslmode") ?? "disable";
  if (!["disable", "allow", "prefer", "require", "verify-ca", "verify-full"].includes(sslmode)) throw new RangeError(`unknown sslmode "${sslmode}"`);
  const rootCert = u.searchParams.get("sslrootcert") ?? undefined;
  return {
    ssl: sslmode === "disable" || sslmode === "allow" ? undefined : { mode: sslmode as SslMode, rootCert },
    host: (hostless ? "" : decodeURIComponent(u.hostname.replace(/^\[|\]$/g, ""))) || u.searchParams.get("host") || "localhost",
    port,
    user: u.username ? decodeURIComponent(u.username) : (u.searchParams.get("user") ?? undefined),
    password: u.password ? decodeURIComponent(u.password) : (u.searchParams.get("password") ?? undefined),
    database: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : undefined,
  };
}

const ERRNO_TEXT: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset",
  ETIMEDOUT: "timed out",
};

/** Bytes of the buffer each connection's socket reads into (reused for every read). */
const READ_BUFFER_BYTES = 256 * 1024;

function openSocket(host: string, port: number, timeoutMs: number, onRead: (n: number, buf: Buffer) => boolean, tlsOptions?: TlsOptions): Promise<net.Socket> {
  // as libpq: no TLS on a Unix socket, whatever sslmode says
  const ssl = host.startsWith("/") ? undefined : tlsOptions;
  return new Promise((resolve, reject) => {
    // without TLS, reads land in one reused buffer; with it, the TLS socket hands out its chunks
    const onread = ssl ? undefined : { buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES), callback: onRead };
    // as libpq: a host that is an absolute path names the directory of the server's Unix socket
    const socket = host.startsWith("/") ? net.connect({ path: path.join(host, `.s.PGSQL.${port}`), onread }) : net.connect({ host, port, onread });
    const fail = (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      const text = (err.code && ERRNO_TEXT[err.code]) ?? err.message;
      reject(new PrimaryConnectError(`cannot connect to primary at ${host}:${port}: ${text}`, err.code, { cause: err }));
    };
    const timer = setTimeout(() => fail(Object.assign(new Error(`timed out after ${timeoutMs} ms`), { code: "ETIMEDOUT" })), timeoutMs);
    socket.once("error", fail);
    socket.once("connect", () => {
      if (!ssl) {
        clearTimeout(timer);
        socket.off("error", fail);
        resolve(socket);
        return;
      }
      socket.off("error", fail);
      negotiateTls(socket, host, ssl).then(
        (secure) => {
          clearTimeout(timer);
          secure.on("data", (chunk: Buffer) => {
            if (!onRead(chunk.length, chunk)) secure.pause();
          });
          resolve(secure);
        },
        fail,
      );
    });
  });
}
