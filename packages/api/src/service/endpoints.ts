// Endpoints: a stock PostgreSQL 15 on a branch. Start = full backup of the branch at its latest
// LSN into a fresh data directory, start postgres on loopback, create a physical slot on it and
// follow it with the branch's walreceiver. Stop = fast shutdown, then wait until the branch has
// durably ingested the endpoint's WAL up to its shutdown checkpoint, so a later start has every
// committed row; an endpoint whose postgres died gives its branch all the valid WAL it left. At
// most one running endpoint per branch.
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import {
  checkEndpointSettings, chownToPostgres, configureEndpoint, detachInheritedSubscriptions, EndpointSettingError, formatLsn, freePortPreferring, generateId, isAlive, mayHaveSubscriptions, prepareDataDirectory, ReplicationConnection,
  shutdownCheckpointEnd, startPostgres, stopPostgres, type Lsn, type TenantManager,
} from "@strata/core";
import type { Database } from "../db.ts";
import { ACTIVE_ENDPOINT_STATES, activeEndpointOn } from "./active-endpoint.ts";
import { tailLines } from "./log-tail.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "../errors.ts";
import type { TenantService } from "./tenants.ts";

/** An endpoint ended as failed: up to where its branch took the WAL it left, or why that failed. */
export interface EndedEndpoint {
  endpointId: string;
  tenantId: string;
  timelineId: string;
  lsn?: string;
  error?: string;
}

export interface EndpointView {
  id: string;
  tenantId: string;
  timelineId: string;
  branch: string;
  state: string;
  port: number | null;
  pid: number | null;
  connectionString: string | null;
  startLsn: string | null;
  stopLsn: string | null;
  createdAt: string;
  /** postgresql.conf settings given at start */
  settings: Record<string, string>;
  /** subscriptions the branch inherited, disabled and detached from their slot at its first start ("database.name") */
  detachedSubscriptions?: string[];
}

type EndpointRow = { id: string; tenantId: string; timelineId: string; state: string; port: number | null; pid: number | null; startLsn: bigint | null; stopLsn: bigint | null; settings: string | null; createdAt: Date };

function view(row: EndpointRow, branch: string): EndpointView {
  return {
    id: row.id,
    tenantId: row.tenantId,
    timelineId: row.timelineId,
    branch,
    state: row.state,
    port: row.port,
    pid: row.pid,
    connectionString: row.state === "running" && row.port ? `postgresql://postgres@127.0.0.1:${row.port}/postgres` : null,
    startLsn: row.startLsn === null ? null : formatLsn(row.startLsn),
    stopLsn: row.stopLsn === null ? null : formatLsn(row.stopLsn),
    createdAt: row.createdAt.toISOString(),
    settings: row.settings ? (JSON.parse(row.settings) as Record<string, string>) : {},
  };
}

/**
 * The line of a postgres log that rejects one of the user's settings ("invalid value for
 * parameter", "unrecognized configuration parameter", …), if any.
 */
function settingRefusal(log: string, settings: Readonly<Record<string, string>>): string | undefined {
  const names = Object.keys(settings).map((name) => name.toLowerCase());
  if (names.length === 0) return undefined;
  return log.split("\n").find((line) => /(FATAL|LOG|ERROR):/.test(line) && names.some((name) => line.toLowerCase().includes(`"${name}"`)));
}

export class EndpointService {
  private readonly busy = new Set<string>();

  constructor(
    private readonly db: Database,
    private readonly dataDir: string,
    private readonly tenants: TenantService,
    private readonly manager: TenantManager,
    private readonly stopTimeoutMs = 120_000,
    /** keep stopped endpoints' data directories (for inspection and tests) */
    private readonly keepDataDirs = process.env.STRATA_KEEP_ENDPOINT_DATA === "1",
  ) {}

  private async resolveBranch(tenantId: string, branch: string) {
    await this.tenants.get(tenantId);
    const row = /^[0-9a-f]{32}$/.test(branch)
      ? await this.db.timeline.findFirst({ where: { tenantId, id: branch } })
      : await this.db.timeline.findFirst({ where: { tenantId, name: branch } });
    if (!row || row.state !== "active") throw new NotFoundError(`branch ${branch} not found in tenant ${tenantId}`);
    return row;
  }

  private lock(timelineId: string) {
    if (this.busy.has(timelineId)) throw new ConflictError(`an endpoint on this branch is already starting or stopping`);
    this.busy.add(timelineId);
  }

  async start(input: { tenantId: string; branch: string; port?: number; settings?: Record<string, string> }): Promise<EndpointView> {
    const settings = input.settings ?? {};
    try {
      checkEndpointSettings(settings);
    } catch (err) {
      if (err instanceof EndpointSettingError) throw new InvalidInputError(err.message);
      throw err;
    }
    const timeline = await this.resolveBranch(input.tenantId, input.branch);
    this.lock(timeline.id);
    const id = generateId();
    let pid: number | undefined;
    let created = false;
    let following = false;
    const root = path.join(this.dataDir, "endpoints", id);
    try {
      const running = await activeEndpointOn(this.db, timeline.id);
      if (running) {
        const dead = running.state === "running" && !isAlive(running.pid) ? `; its postgres (pid ${running.pid}) is gone: \`endpoint stop\` gives the branch the WAL it left` : "";
        throw new ConflictError(`branch ${timeline.name} already has a ${running.state} endpoint (${running.id}) on port ${running.port}${dead}`);
      }
      if (timeline.primaryUrl) throw new ConflictError(`branch ${timeline.name} follows an external primary; start endpoints on a branch of it`);
      const handle = this.manager.get(input.tenantId, timeline.id);
      if (!handle) throw new NotFoundError(`branch ${timeline.name} is not attached`);
      // without a port: the one the branch's last endpoint had, if free, so a restart keeps its connection string
      const last = input.port === undefined ? await this.db.endpoint.findFirst({ where: { timelineId: timeline.id }, orderBy: { createdAt: "desc" }, select: { port: true } }) : null;
      const port = input.port ?? (await freePortPreferring(last?.port));
      await this.db.endpoint.create({
        data: { id, tenantId: input.tenantId, timelineId: timeline.id, port, state: "starting", dataDir: root, settings: Object.keys(settings).length ? JSON.stringify(settings) : null },
      });
      created = true;
      // a branch delete claims the branch before it looks for endpoints: one of the two sees the other
      if ((await this.db.timeline.findUnique({ where: { id: timeline.id } }))?.state !== "active") throw new NotFoundError(`branch ${timeline.name} is being deleted`);
      const lsn = (await handle.store.readMarkers()).lastRecordLsn;
      mkdirSync(root, { recursive: true });
      // postgres runs as its own user: it must be able to traverse down to its data directory
      for (const dir of [this.dataDir, path.dirname(root)]) chmodSync(dir, statSync(dir).mode | 0o011);
      chownToPostgres(root);
      const pgdata = path.join(root, "pgdata");
      await prepareDataDirectory(handle.reader, lsn, pgdata);
      configureEndpoint(pgdata, { port, socketDir: root, settings });
      const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
      const logFile = path.join(root, "postgres.log");
      const start = async (runSettings?: Record<string, string | number>) => {
        try {
          return await startPostgres(pgdata, logFile, runSettings);
        } catch (err) {
          // a value postgres does not take is the caller's mistake: say which, from its log
          let log = "";
          try {
            log = readFileSync(logFile, "utf8");
          } catch {}
          const refusal = settingRefusal(log, settings);
          if (refusal) throw new InvalidInputError(`postgres refused a setting: ${refusal.replace(/^.*?(FATAL|LOG|ERROR):\s*/, "")}`);
          throw err;
        }
      };
      // Subscriptions in the data directory of a branch's first endpoint belong to the cluster it
      // was made from (their slots on the publisher are that cluster's): they are detached before
      // any logical replication worker may start, then postgres restarts with its settings.
      let detached: string[] = [];
      const everRan = await this.db.endpoint.count({ where: { timelineId: timeline.id, startLsn: { not: null } } });
      if (everRan === 0 && (await mayHaveSubscriptions(handle.reader, lsn))) {
        pid = await start({ max_logical_replication_workers: 0 });
        detached = await detachInheritedSubscriptions(url);
        await stopPostgres(pid, this.stopTimeoutMs);
        pid = undefined;
      }
      pid = await start();
      const slot = `strata_ep_${timeline.id.slice(0, 16)}`;
      const conn = await ReplicationConnection.connect(url, { applicationName: "strata-endpoint-setup" });
      try {
        await conn.ensurePhysicalSlot(slot, { reserveWal: true });
      } finally {
        await conn.close().catch(() => conn.destroy());
      }
      following = true;
      await this.db.timeline.update({ where: { id: timeline.id }, data: { primaryUrl: url, slotName: slot } });
      await this.manager.startReceiver(input.tenantId, timeline.id, url, slot);
      const row = await this.db.endpoint.update({ where: { id }, data: { state: "running", pid, startLsn: lsn } });
      return { ...view(row, timeline.name), ...(detached.length ? { detachedSubscriptions: detached } : {}) };
    } catch (err) {
      // undo only what this call did (a refused start must not touch the running endpoint)
      if (pid) await stopPostgres(pid).catch(() => {});
      if (following) {
        await this.manager.stopReceiver(input.tenantId, timeline.id).catch(() => {});
        await this.db.timeline.update({ where: { id: timeline.id }, data: { primaryUrl: null, slotName: null } }).catch(() => {});
      }
      if (created) {
        await this.db.endpoint.delete({ where: { id } }).catch(() => {});
        rmSync(root, { recursive: true, force: true });
      }
      throw err;
    } finally {
      this.busy.delete(timeline.id);
    }
  }

  async stop(input: { tenantId: string; branch: string }): Promise<EndpointView & { dataDir: string | null }> {
    const timeline = await this.resolveBranch(input.tenantId, input.branch);
    const row = await this.db.endpoint.findFirst({ where: { timelineId: timeline.id, state: "running" } });
    if (!row) throw new NotFoundError(`branch ${timeline.name} has no running endpoint`);
    this.lock(timeline.id);
    try {
      await this.db.endpoint.update({ where: { id: row.id }, data: { state: "stopping" } });
      const pgdata = path.join(row.dataDir ?? "", "pgdata");
      let end: Lsn;
      if (row.pid && isAlive(row.pid)) {
        await stopPostgres(row.pid, this.stopTimeoutMs);
        // Only return once the branch has everything the endpoint wrote. The walsender sends all
        // WAL before postgres exits, but only to a receiver that was streaming; whatever it did
        // not get (a stop right after the start, a reconnect in progress) is read from its pg_wal.
        // (The receiver stops first: it would only retry a postgres that is gone.)
        await this.manager.stopReceiver(input.tenantId, timeline.id);
        end = await shutdownCheckpointEnd(pgdata);
        await this.manager.ingestFromWalDir(input.tenantId, timeline.id, path.join(pgdata, "pg_wal"), end);
      } else {
        // postgres died: its last checkpoint says nothing about what it wrote after it
        end = await this.salvageWal(input.tenantId, timeline.id, pgdata);
      }
      await this.db.timeline.update({ where: { id: timeline.id }, data: { primaryUrl: null, slotName: null } });
      const stopped = await this.db.endpoint.update({ where: { id: row.id }, data: { state: "stopped", pid: null, stopLsn: end } });
      if (row.dataDir && !this.keepDataDirs) rmSync(row.dataDir, { recursive: true, force: true });
      return { ...view(stopped, timeline.name), dataDir: row.dataDir };
    } catch (err) {
      // a postgres that is gone cannot be running again; its data directory is kept for inspection
      const state = row.pid && isAlive(row.pid) ? "running" : "failed";
      await this.db.endpoint.update({ where: { id: row.id }, data: { state } }).catch(() => {});
      if (state === "failed") await this.db.timeline.update({ where: { id: timeline.id }, data: { primaryUrl: null, slotName: null } }).catch(() => {});
      let log = "";
      try {
        log = readFileSync(path.join(row.dataDir ?? "", "postgres.log"), "utf8").split("\n").slice(-12).join("\n");
      } catch {}
      throw new Error(`${(err as Error).message}${log ? `\nendpoint log:\n${log}` : ""}`);
    } finally {
      this.busy.delete(timeline.id);
    }
  }

  async list(tenantId: string): Promise<EndpointView[]> {
    await this.tenants.get(tenantId);
    const rows = await this.db.endpoint.findMany({ where: { tenantId }, orderBy: { createdAt: "asc" }, include: { timeline: { select: { name: true } } } });
    return rows.map((r) => view(r, r.timeline.name));
  }

  /**
   * The last `lines` lines of the postgres log of the branch's newest endpoint (running, or one
   * whose data directory is still there: a failed one, or any with STRATA_KEEP_ENDPOINT_DATA=1).
   */
  async logs(input: { tenantId: string; branch: string; lines: number }): Promise<{ endpointId: string; state: string; lines: string[] }> {
    const timeline = await this.resolveBranch(input.tenantId, input.branch);
    const row = await this.db.endpoint.findFirst({ where: { timelineId: timeline.id }, orderBy: { createdAt: "desc" } });
    if (!row) throw new NotFoundError(`branch ${timeline.name} has no endpoint`);
    const logFile = path.join(row.dataDir ?? "", "postgres.log");
    if (!row.dataDir || !existsSync(logFile)) {
      throw new NotFoundError(`the log of endpoint ${row.id} (${row.state}) is gone: an endpoint's data directory is removed when it stops`);
    }
    return { endpointId: row.id, state: row.state, lines: tailLines(logFile, input.lines) };
  }

  /** Stops every running endpoint (used when a tenant is deleted). */
  async stopAll(tenantId: string): Promise<void> {
    for (const row of await this.db.endpoint.findMany({ where: { tenantId, state: { in: ["running", "starting", "stopping"] } } })) {
      // after a check of dead endpoints (reapDead) that may be reading this data directory
      while (this.busy.has(row.timelineId)) await new Promise((r) => setTimeout(r, 50));
      this.busy.add(row.timelineId);
      try {
        if (row.pid && isAlive(row.pid)) await stopPostgres(row.pid).catch(() => {});
        if (row.dataDir && existsSync(row.dataDir)) rmSync(row.dataDir, { recursive: true, force: true });
        // not left "running" with a dead pid for the check of dead endpoints to find
        await this.db.endpoint.update({ where: { id: row.id }, data: { state: "stopped", pid: null } }).catch(() => {});
      } finally {
        this.busy.delete(row.timelineId);
      }
    }
  }

  /** Endpoints recover() ends: on record as active, but their postgres is gone or their start or stop was cut short. */
  private async endpointsToRecover() {
    const rows = await this.db.endpoint.findMany({ where: { state: { in: ACTIVE_ENDPOINT_STATES } } });
    return rows.filter((row) => !(row.state === "running" && isAlive(row.pid)));
  }

  /** Branches whose endpoint recover() ends. */
  async timelinesOfDeadEndpoints(): Promise<Set<string>> {
    return new Set((await this.endpointsToRecover()).map((row) => row.timelineId));
  }

  /**
   * At startup, after the timelines are attached: endpoints whose postgres died while the
   * pageserver was down are marked failed, once the WAL they left (committed and acknowledged,
   * maybe never streamed) is in their branch. A start or stop that was cut short fails the same way.
   */
  async recover(): Promise<EndedEndpoint[]> {
    const ended: EndedEndpoint[] = [];
    for (const row of await this.endpointsToRecover()) ended.push(await this.endAsFailed(row));
    return ended;
  }

  /**
   * Endpoints on record as running whose postgres is gone (it crashed or was killed while the
   * pageserver ran) are ended the same way: the WAL they left goes into their branch, and they are
   * marked failed, so a new endpoint can start there. The pageserver runs this every few seconds;
   * a branch whose endpoint is being started or stopped is left to that call.
   */
  async reapDead(): Promise<EndedEndpoint[]> {
    const ended: EndedEndpoint[] = [];
    for (const candidate of await this.db.endpoint.findMany({ where: { state: "running" } })) {
      if (isAlive(candidate.pid) || this.busy.has(candidate.timelineId)) continue;
      this.busy.add(candidate.timelineId);
      try {
        const row = await this.db.endpoint.findUnique({ where: { id: candidate.id } });
        if (row?.state === "running" && !isAlive(row.pid)) ended.push(await this.endAsFailed(row));
      } finally {
        this.busy.delete(candidate.timelineId);
      }
    }
    return ended;
  }

  /** Stops what is left of an endpoint, gives its branch the WAL it left, and marks it failed (its data directory stays). */
  private async endAsFailed(row: { id: string; tenantId: string; timelineId: string; pid: number | null; dataDir: string | null }): Promise<EndedEndpoint> {
    const outcome: EndedEndpoint = { endpointId: row.id, tenantId: row.tenantId, timelineId: row.timelineId };
    if (row.dataDir) {
      const pgdata = path.join(row.dataDir, "pgdata");
      try {
        // a start or stop cut short can leave its postgres running: stopped first, then salvaged
        const pid = isAlive(row.pid) ? row.pid : runningPostmaster(pgdata);
        if (pid) await stopPostgres(pid, this.stopTimeoutMs);
        outcome.lsn = formatLsn(await this.salvageWal(row.tenantId, row.timelineId, pgdata));
      } catch (err) {
        outcome.error = (err as Error).message;
      }
    }
    await this.db.endpoint.update({ where: { id: row.id }, data: { state: "failed", pid: null } });
    await this.db.timeline.update({ where: { id: row.timelineId }, data: { primaryUrl: null, slotName: null } }).catch(() => {});
    return outcome;
  }

  /** The branch takes every valid record a dead endpoint left in its pg_wal (its walreceiver stops first). */
  private async salvageWal(tenantId: string, timelineId: string, pgdata: string): Promise<Lsn> {
    const markers = await this.manager.markers(tenantId, timelineId);
    if (!markers) throw new Error(`branch ${timelineId} is not attached`);
    await this.manager.stopReceiver(tenantId, timelineId);
    const walDir = path.join(pgdata, "pg_wal");
    if (!existsSync(walDir)) return markers.lastRecordLsn; // a start cut short before its data directory was written
    return this.manager.ingestFromWalDir(tenantId, timelineId, walDir);
  }
}

/** The pid in a data directory's postmaster.pid if that process is a live postgres. */
function runningPostmaster(pgdata: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
    if (!isAlive(pid)) return undefined;
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("postgres") ? pid : undefined;
  } catch {
    return undefined;
  }
}

export { InvalidInputError };
