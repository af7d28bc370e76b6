"use client";
// The header on every page: navigation plus the pageserver's liveness (up/down, version,
// uptime), polled every few seconds through the health procedure.
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { describeError } from "@/lib/errors";
import { formatUptime, plural } from "@/lib/format";
import { useTRPC } from "@/lib/trpc";

const HEALTH_POLL_MS = 3_000;

export function StatusHeader({ apiUrl }: { apiUrl: string }) {
  const trpc = useTRPC();
  const health = useQuery({
    ...trpc.health.queryOptions(),
    refetchInterval: HEALTH_POLL_MS,
    retry: false,
  });

  return (
    <header className="site-header">
      <div className="site-header-inner">
        <Link href="/" className="brand">
          <span className="brand-mark" aria-hidden>▣</span> Strata
        </Link>
        <nav className="site-nav">
          <Link href="/">Tenants</Link>
        </nav>
        <div className="status" data-testid="pageserver-status" title={`pageserver API: ${apiUrl}`} data-state={health.isError ? "down" : health.data ? "up" : "checking"}>
          {health.isError ? (
            <>
              <span className="status-dot status-down" aria-hidden />
              <span className="status-label">pageserver down</span>
              <span className="status-detail" data-testid="pageserver-status-message">
                {describeError(health.error).message}
              </span>
            </>
          ) : health.data ? (
            <>
              <span className="status-dot status-up" aria-hidden />
              <span className="status-label">pageserver up</span>
              <span className="status-detail">
                v{health.data.version} · up {formatUptime(health.data.uptimeSeconds)} ·{" "}
                {plural(health.data.attachedTimelines, "attached timeline")}
              </span>
            </>
          ) : (
            <>
              <span className="status-dot status-unknown" aria-hidden />
              <span className="status-label">checking {apiUrl}…</span>
            </>
          )}
        </div>
      </div>
    </header>
  );
}
