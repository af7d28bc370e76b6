// The page service listener: core's pagestream server wired to this daemon's tenants, metrics
// and logs.
import type { Logger } from "pino";
import { createPageServiceServer, type TenantManager, type TimelineHandle, type Lsn } from "@strata/core";
import type { Metrics } from "./metrics.ts";

export function createPageService(opts: {
  logger: Logger;
  metrics: Metrics;
  manager: TenantManager;
  fullBackup?: (handle: TimelineHandle, lsn: Lsn | undefined, write: (chunk: Buffer, reuse?: boolean) => Promise<void>) => Promise<void>;
}) {
  const { logger, metrics } = opts;
  const observers = new Map<string, ReturnType<Metrics["pageRequests"]["labels"]>>();
  return createPageServiceServer({
    manager: opts.manager,
    waitLsnMs: Number(process.env.STRATA_WAIT_LSN_MS ?? 60_000),
    fullBackup: opts.fullBackup,
    onConnection: (delta) => metrics.pageServiceConnections.inc(delta),
    onRequest: (kind, seconds, ok) => {
      // one labelled child per kind and outcome: no label hashing per request
      const key = `${kind}/${ok}`;
      let child = observers.get(key);
      if (!child) observers.set(key, (child = metrics.pageRequests.labels({ kind, ok: ok ? "ok" : "error" })));
      child.observe(seconds);
    },
    log: (level, message, fields) => logger[level](fields ?? {}, message),
  });
}
