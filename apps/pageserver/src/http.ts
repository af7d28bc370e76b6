// The HTTP side of the pageserver: the tRPC API at /trpc, Prometheus metrics at /metrics,
// and a liveness probe at /healthz.
import http from "node:http";
import { createHTTPHandler } from "@trpc/server/adapters/standalone";
import { appRouter, type Context } from "@strata/api";
import type { Logger } from "pino";
import type { Metrics } from "./metrics.ts";

export function createHttpServer(opts: { context: Omit<Context, "actor">; metrics: Metrics; logger: Logger }) {
  const { metrics, logger } = opts;
  const trpc = createHTTPHandler({
    router: appRouter,
    basePath: "/trpc/",
    createContext: ({ req }) => ({ ...opts.context, actor: String(req.headers["x-strata-actor"] ?? "http") }),
    onError: ({ error, path }) => {
      if (error.code === "INTERNAL_SERVER_ERROR") logger.error({ err: error, path }, "api error");
    },
  });
  return http.createServer(async (req, res) => {
    const url = req.url ?? "/";
    const route = url.startsWith("/trpc/") ? "/trpc" : url.split("?")[0];
    const end = metrics.httpDuration.startTimer({ path: route });
    res.on("finish", () => {
      end();
      metrics.httpRequests.inc({ path: route, status: String(res.statusCode) });
    });
    // The dashboard calls from its own origin; allow it (loopback-only server).
    res.setHeader("access-control-allow-origin", "*");
    res.setHeader("access-control-allow-headers", "content-type, x-strata-actor, trpc-accept");
    if (req.method === "OPTIONS") {
      res.writeHead(204).end();
      return;
    }
    if (url === "/metrics") {
      metrics.attachedTimelines.set(opts.context.manager.attachedTimelineCount);
      for (const t of opts.context.manager.receivers()) {
        metrics.lag.set({ tenant: t.tenantId, timeline: t.timelineId }, Number(t.primaryFlushLsn > t.lastRecordLsn ? t.primaryFlushLsn - t.lastRecordLsn : 0n));
      }
      // (reset: a timeline detached since the last scrape has no figure any more)
      metrics.timelinePhysicalSize.reset();
      metrics.timelineLogicalSize.reset();
      for (const t of opts.context.manager.attachedTimelines()) {
        const sizes = await opts.context.manager.timelineSizes(t.tenantId, t.timelineId).catch(() => undefined);
        if (!sizes) continue;
        const labels = { tenant: t.tenantId, timeline: t.timelineId };
        metrics.timelinePhysicalSize.set(labels, sizes.physicalBytes);
        if (sizes.logicalBytes !== null) metrics.timelineLogicalSize.set(labels, sizes.logicalBytes);
      }
      res.writeHead(200, { "content-type": metrics.registry.contentType });
      res.end(await metrics.registry.metrics());
      return;
    }
    if (url === "/healthz") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true }));
      return;
    }
    if (url.startsWith("/trpc/")) {
      trpc(req, res);
      return;
    }
    res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: `no route for ${url}` }));
  });
}
