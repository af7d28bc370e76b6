// Prometheus metrics served at /metrics.
import { sharedPageCache, sharedRedoPool } from "@strata/core";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "strata_" });
  return {
    registry,
    httpRequests: new Counter({
      name: "strata_http_requests_total",
      help: "HTTP API requests by path and status",
      labelNames: ["path", "status"] as const,
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: "strata_http_request_duration_seconds",
      help: "HTTP API request duration",
      labelNames: ["path"] as const,
      registers: [registry],
    }),
    tenants: new Gauge({ name: "strata_tenants", help: "Active tenants", registers: [registry] }),
    attachedTimelines: new Gauge({ name: "strata_attached_timelines", help: "Timelines with an open store", registers: [registry] }),
    walBytes: new Counter({ name: "strata_wal_ingested_bytes_total", help: "WAL bytes durably ingested (stored size)", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    walRecords: new Counter({ name: "strata_wal_ingested_records_total", help: "WAL records durably ingested", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    reconnects: new Counter({ name: "strata_walreceiver_reconnects_total", help: "walreceiver reconnects to the primary", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    compactionImages: new Counter({ name: "strata_compaction_images_total", help: "Block images stored by compaction passes (history cuts)", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    compactionMoved: new Counter({ name: "strata_compaction_moved_versions_total", help: "Block versions compaction passes moved to the history key space", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    timelinePhysicalSize: new Gauge({ name: "strata_timeline_physical_size_bytes", help: "Bytes an attached timeline takes on disk (LevelDB, page image and record log files)", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    timelineLogicalSize: new Gauge({ name: "strata_timeline_logical_size_bytes", help: "Bytes of all relation forks of an attached timeline's databases at its last_record_lsn", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    lag: new Gauge({ name: "strata_wal_lag_bytes", help: "primary flush LSN minus last_record_lsn", labelNames: ["tenant", "timeline"] as const, registers: [registry] }),
    pageRequests: new Histogram({
      name: "strata_page_service_request_duration_seconds",
      help: "Page service requests by kind and outcome",
      labelNames: ["kind", "ok"] as const,
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5],
      registers: [registry],
    }),
    endpointsDied: new Counter({
      name: "strata_endpoints_died_total",
      help: "Endpoints whose postgres was found dead (then marked failed, their WAL ingested into their branch)",
      labelNames: ["tenant", "timeline"] as const,
      registers: [registry],
    }),
    pageServiceConnections: new Gauge({ name: "strata_page_service_connections", help: "Open page service connections", registers: [registry] }),
    pageCacheHits: new Gauge({
      name: "strata_page_cache_hits",
      help: "Reads served by the shared page cache since start",
      registers: [registry],
      collect() {
        this.set(sharedPageCache.hits);
      },
    }),
    pageCacheMisses: new Gauge({
      name: "strata_page_cache_misses",
      help: "Reads the shared page cache could not serve since start",
      registers: [registry],
      collect() {
        this.set(sharedPageCache.misses);
      },
    }),
    redoWorkers: new Gauge({
      name: "strata_redo_workers",
      help: "Redo worker threads running (limit: STRATA_REDO_WORKERS)",
      registers: [registry],
      collect() {
        this.set(sharedRedoPool.stats.workers);
      },
    }),
    redoWorkerPages: new Gauge({
      name: "strata_redo_worker_pages",
      help: "Pages rebuilt by redo workers since start (long chains; shorter ones replay on the main thread)",
      registers: [registry],
      collect() {
        this.set(sharedRedoPool.stats.jobs);
      },
    }),
    redoWorkerFailed: new Gauge({
      name: "strata_redo_worker_failed",
      help: "Pages a redo worker could not rebuild since start (rebuilt again on the main thread)",
      registers: [registry],
      collect() {
        this.set(sharedRedoPool.stats.failed);
      },
    }),
    pageCachePages: new Gauge({
      name: "strata_page_cache_pages",
      help: "Pages held by the shared page cache (limit: STRATA_PAGE_CACHE_MB)",
      registers: [registry],
      collect() {
        this.set(sharedPageCache.size);
      },
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
