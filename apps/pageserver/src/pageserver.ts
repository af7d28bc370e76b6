// The pageserver daemon: applies metadata migrations, recovers from any crash mid-create/delete,
// attaches active tenants, then serves the HTTP API (+/metrics) and the page service.
import { mkdirSync, openSync, closeSync, readFileSync, writeFileSync, unlinkSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import pino, { type Logger } from "pino";
import { formatLsn, fullBackup, redoWorkersSetting, sharedRedoPool, TenantManager } from "@strata/core";
import { applyMigrations, BranchService, EndpointService, defaultDatabaseUrl, openDatabase, TenantService, type EndedEndpoint } from "@strata/api";
import { createHttpServer } from "./http.ts";
import { createMetrics } from "./metrics.ts";
import { createPageService } from "./page-service.ts";
import { VERSION } from "./version.ts";

export interface PageserverOptions {
  dataDir: string;
  pgListen: string;
  httpListen: string;
  databaseUrl?: string;
  logger?: Logger;
}

/** How often endpoints are checked for a postgres that died (STRATA_ENDPOINT_CHECK_MS). */
const ENDPOINT_CHECK_MS = Number(process.env.STRATA_ENDPOINT_CHECK_MS ?? 5000);

export interface RunningPageserver {
  httpAddress: string;
  pgAddress: string;
  close(): Promise<void>;
}

export function parseListen(text: string, what: string): { host: string; port: number } {
  const match = /^(.+):(\d+)$/.exec(text);
  const port = match ? Number(match[2]) : NaN;
  if (!match || port > 65535) throw new RangeError(`invalid ${what} address "${text}": expected HOST:PORT, e.g. 127.0.0.1:9898`);
  return { host: match[1], port };
}

function listen(server: net.Server, where: { host: string; port: number }, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(new Error(`cannot listen on ${where.host}:${where.port} for ${what}: ${err.code ?? err.message}`)),
    );
    server.listen(where.port, where.host, () => {
      const address = server.address() as net.AddressInfo;
      resolve(`${address.address}:${address.port}`);
    });
  });
}

/** One daemon per data directory: a pid file that is taken over only if its owner is gone. */
function lockDataDir(dataDir: string): () => void {
  const file = path.join(dataDir, "pageserver.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx");
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        try {
          if (readFileSync(file, "utf8").trim() === String(process.pid)) unlinkSync(file);
        } catch {}
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = Number(readFileSync(file, "utf8").trim());
      let alive = false;
      try {
        if (owner > 0 && owner !== process.pid) {
          process.kill(owner, 0);
          alive = true;
        }
      } catch {}
      if (alive) throw new Error(`data directory ${dataDir} is in use by another pageserver (pid ${owner})`);
      unlinkSync(file);
    }
  }
  throw new Error(`cannot lock data directory ${dataDir}`);
}

export async function startPageserver(options: PageserverOptions): Promise<RunningPageserver> {
  const logger = options.logger ?? pino({ name: "pageserver" });
  redoWorkersSetting(); // a bad STRATA_REDO_WORKERS is refused before anything starts
  const dataDir = path.resolve(options.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const pgWhere = parseListen(options.pgListen, "page service");
  const httpWhere = parseListen(options.httpListen, "HTTP");
  const unlock = lockDataDir(dataDir);
  try {
    const databaseUrl = options.databaseUrl ?? process.env.DATABASE_URL ?? defaultDatabaseUrl(dataDir);
    await applyMigrations(databaseUrl);
    const db = openDatabase(databaseUrl);
    const metrics = createMetrics();
    const manager = new TenantManager(dataDir, {
      onDurable: (tenantId, timelineId, lsn, bytes, records) => {
        metrics.walBytes.inc({ tenant: tenantId, timeline: timelineId }, bytes);
        metrics.walRecords.inc({ tenant: tenantId, timeline: timelineId }, records);
      },
      onReceiverEvent: (tenantId, timelineId, event, detail) => {
        if (event === "reconnect") metrics.reconnects.inc({ tenant: tenantId, timeline: timelineId });
        const log = event === "connected" ? logger.info.bind(logger) : logger.warn.bind(logger);
        log({ tenantId, timelineId, detail }, `walreceiver ${event}`);
      },
      onCompaction: (tenantId, timelineId, result, lsn, underLoad) => {
        metrics.compactionImages.inc({ tenant: tenantId, timeline: timelineId }, result.images);
        metrics.compactionMoved.inc({ tenant: tenantId, timeline: timelineId }, result.moved);
        logger.info({ tenantId, timelineId, lsn: formatLsn(lsn), ...result, ...(underLoad ? { underLoad } : {}) }, "compaction pass");
      },
      onCompactionError: (tenantId, timelineId, err) => logger.warn({ tenantId, timelineId, err: err.message }, "compaction pass failed"),
    });
    const timelineSpecs = (tenantId: string) =>
      db.timeline.findMany({
        where: { tenantId, state: "active" },
        select: { id: true, primaryUrl: true, slotName: true, parentTimelineId: true, ancestorLsn: true },
        orderBy: { createdAt: "asc" },
      });
    const tenants = new TenantService(db, dataDir, {
      bootstrapTimeline: async (tenantId, timelineId) => {
        const { lsn } = await manager.bootstrap(tenantId, timelineId);
        logger.info({ tenantId, timelineId, lsn: formatLsn(lsn) }, "bootstrapped an empty cluster (initdb)");
      },
      importTimeline: async (tenantId, timelineId, primaryUrl, slot, onProgress) => {
        logger.info({ tenantId, timelineId, slot }, "importing base backup from primary");
        const result = await manager.importFromPrimary(tenantId, timelineId, primaryUrl, slot, onProgress);
        logger.info({ tenantId, timelineId, files: result.files, bytes: result.bytes }, "base backup imported");
      },
      onTenantActive: async (tenantId) => {
        await manager.attach(tenantId, await timelineSpecs(tenantId));
        metrics.tenants.inc();
        logger.info({ tenantId }, "tenant attached");
      },
      onTenantDeleting: async (tenantId) => {
        await endpoints.stopAll(tenantId);
        await manager.detach(tenantId);
        metrics.tenants.dec();
        logger.info({ tenantId }, "tenant detached for deletion");
      },
      releasePrimarySlot: async (tenantId, timelineId, primaryUrl, slot) => {
        try {
          const outcome = await manager.releasePrimarySlot(tenantId, timelineId, primaryUrl, slot);
          logger.info({ tenantId, timelineId, slot, outcome }, outcome === "dropped" ? "dropped the timeline's replication slot on its primary" : "the primary had no replication slot to drop");
        } catch (err) {
          logger.warn({ tenantId, timelineId, slot, err: (err as Error).message }, "could not drop the timeline's replication slot on its primary");
          throw err;
        }
      },
    });
    const endpoints: EndpointService = new EndpointService(db, dataDir, tenants, manager);
    const recovery = await tenants.recover();
    if (recovery.rolledBack.length || recovery.removedDirs.length || recovery.warnings.length) logger.warn(recovery, "recovered from an interrupted create/delete");
    // a branch whose endpoint died does not follow it again; the WAL it left is ingested below
    const orphaned = await endpoints.timelinesOfDeadEndpoints();
    for (const tenantId of recovery.active) {
      const specs = (await timelineSpecs(tenantId)).map((spec) => (orphaned.has(spec.id) ? { ...spec, primaryUrl: null, slotName: null } : spec));
      await manager.attach(tenantId, specs);
    }
    const reportDead = (ended: EndedEndpoint[], when: string) => {
      for (const endpoint of ended) {
        metrics.endpointsDied.inc({ tenant: endpoint.tenantId, timeline: endpoint.timelineId });
        if (endpoint.error) logger.error(endpoint, `an endpoint's postgres died${when}, and the WAL it left could not be ingested`);
        else logger.warn(endpoint, `an endpoint's postgres died${when}: marked failed, its WAL ingested into its branch`);
      }
    };
    reportDead(await endpoints.recover(), " while the pageserver was down");
    metrics.tenants.set(recovery.active.length);

    const pageService = createPageService({
      logger,
      metrics,
      manager,
      fullBackup: async (handle, lsn, write) => {
        let markers = await handle.store.readMarkers();
        const target = lsn ?? markers.lastRecordLsn;
        if (target < markers.startLsn) throw new Error(`LSN ${formatLsn(target)} is below the first readable LSN ${formatLsn(markers.startLsn)} of the timeline`);
        if (target > markers.lastRecordLsn) markers = await manager.waitForLsn(handle.tenantId, handle.timelineId, target, 60_000);
        const where = { tenantId: handle.tenantId, timelineId: handle.timelineId, lsn: formatLsn(target) };
        let result;
        try {
          result = await fullBackup(handle.reader, target, write);
        } catch (err) {
          logger.warn({ ...where, err: (err as Error).message }, "full backup failed");
          throw err;
        }
        logger.info({ ...where, bytes: result.bytes }, "full backup sent");
      },
    });
    const pageConnections = new Set<net.Socket>();
    pageService.on("connection", (socket: net.Socket) => {
      pageConnections.add(socket);
      socket.once("close", () => pageConnections.delete(socket));
    });
    const info = { version: VERSION, startedAt: new Date(), pageServiceAddress: "", httpAddress: "" };
    const branches = new BranchService(db, dataDir, tenants, manager);
    const httpServer = createHttpServer({ context: { db, tenants, branches, endpoints, manager, info }, metrics, logger });
    info.pageServiceAddress = await listen(pageService, pgWhere, "the page service");
    info.httpAddress = await listen(httpServer, httpWhere, "the HTTP API");
    logger.info({ http: info.httpAddress, pageService: info.pageServiceAddress, dataDir, tenants: recovery.active.length }, "pageserver ready");
    // started now, not at the first long chain a read meets (reads replay on the main thread meanwhile)
    void sharedRedoPool.start().then(() =>
      sharedRedoPool.stats.workers === sharedRedoPool.size
        ? logger.info({ workers: sharedRedoPool.size }, "redo workers ready")
        : logger.warn({ workers: sharedRedoPool.stats.workers, configured: sharedRedoPool.size }, "redo workers did not start: pages replay on the main thread"),
    );

    // an endpoint whose postgres dies while we run: its branch takes the WAL it left, it is marked failed
    const reaper = setInterval(() => {
      endpoints.reapDead().then(
        (ended) => reportDead(ended, ""),
        (err: unknown) => logger.error({ err: (err as Error).message }, "checking endpoints failed"),
      );
    }, ENDPOINT_CHECK_MS);
    reaper.unref();

    let closing: Promise<void> | undefined;
    return {
      httpAddress: info.httpAddress,
      pgAddress: info.pageServiceAddress,
      close: () =>
        (closing ??= (async () => {
          clearInterval(reaper);
          httpServer.closeAllConnections?.();
          for (const socket of pageConnections) socket.destroy();
          await Promise.all([
            new Promise<void>((r) => httpServer.close(() => r())),
            new Promise<void>((r) => pageService.close(() => r())),
          ]);
          await manager.shutdown();
          await db.$disconnect();
          unlock();
          logger.info("pageserver stopped");
        })()),
    };
  } catch (err) {
    unlock();
    throw err;
  }
}
