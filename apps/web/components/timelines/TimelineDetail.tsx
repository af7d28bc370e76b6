"use client";
// The timeline page: who it follows (primary, WAL receiver), where it is (LSNs, lag), and the
// live LSN progress chart. Everything is polled every second.
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import type { ReactNode } from "react";
import { DeleteBranchButton } from "@/components/branches/DeleteBranchButton";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { Mono } from "@/components/common/Mono";
import { errorCode } from "@/lib/errors";
import { formatBytes, formatTimestamp } from "@/lib/format";
import { useTRPC } from "@/lib/trpc";
import { EndpointsPanel } from "@/components/endpoints/EndpointsPanel";
import { CompactionFact } from "./CompactionFact";
import { LsnChart, PROGRESS_POLL_MS } from "./LsnChart";
import { SetPrimaryForm } from "./SetPrimaryForm";

function Stat({ label, title, testId, children }: { label: string; title?: string; testId: string; children: ReactNode }) {
  return (
    <div className="stat" title={title}>
      <span className="stat-label">{label}</span>
      <span className="stat-value" data-testid={testId}>{children}</span>
    </div>
  );
}

export function TimelineDetail({ tenantId, timelineId }: { tenantId: string; timelineId: string }) {
  const trpc = useTRPC();
  const router = useRouter();
  const timeline = useQuery({
    ...trpc.timelines.get.queryOptions({ tenantId, timelineId }),
    refetchInterval: PROGRESS_POLL_MS,
  });
  const back = (
    <p className="breadcrumb">
      <Link href={`/tenants/${tenantId}`}>← Tenant <Mono>{tenantId.slice(0, 8)}</Mono></Link>
    </p>
  );

  if (timeline.isPending) return <p className="muted">Loading timeline…</p>;
  const t = timeline.data;
  if (!t) {
    const code = errorCode(timeline.error);
    const title = code === "NOT_FOUND" ? "Timeline not found." : code === "BAD_REQUEST" ? "Invalid tenant or timeline id." : "Cannot load timeline.";
    return (
      <>
        <ErrorNotice title={title} error={timeline.error} />
        {back}
      </>
    );
  }
  const wr = t.walreceiver;

  return (
    <>
      {back}
      {timeline.isError ? <ErrorNotice title="Cannot refresh timeline." error={timeline.error} /> : null}
      <section className="card" data-testid="timeline-header">
        <div className="card-head">
          <h1>
            Timeline <span className="strong">{t.name}</span>
          </h1>
          {t.parentTimelineId ? <DeleteBranchButton tenantId={tenantId} timelineId={t.id} name={t.name} onDeleted={() => router.push(`/tenants/${tenantId}`)} /> : null}
        </div>
        <dl className="facts">
          <dt>Timeline id</dt>
          <dd><Mono>{t.id}</Mono></dd>
          <dt>Tenant id</dt>
          <dd><Link href={`/tenants/${tenantId}`}><Mono>{tenantId}</Mono></Link></dd>
          {t.parentTimelineId ? (
            <>
              <dt>Branched from</dt>
              <dd>
                <Link href={`/tenants/${tenantId}/timelines/${t.parentTimelineId}`}><Mono>{t.parentTimelineId}</Mono></Link> at <Mono>{t.ancestorLsn}</Mono>
              </dd>
            </>
          ) : null}
          <dt>State</dt>
          <dd>
            <span className={`badge badge-${t.state}`}>{t.state}</span>
            {t.attached ? null : <span className="badge badge-detached" title="not loaded by the pageserver">detached</span>}
            <span className="muted"> created {formatTimestamp(t.createdAt)}</span>
          </dd>
          <dt>Primary</dt>
          <dd data-testid="timeline-primary">{t.primary ? <Mono>{t.primary}</Mono> : <span className="muted">none (not following a primary)</span>}</dd>
          {t.followsExternalPrimary ? (
            <>
              <dt>Failover</dt>
              <dd>
                <SetPrimaryForm tenantId={tenantId} timelineId={t.id} />
              </dd>
            </>
          ) : null}
          <dt>WAL receiver</dt>
          <dd data-testid="walreceiver">
            {wr ? (
              <>
                <span className={`badge badge-wr-${wr.state}`}>{wr.state}</span>
                <span className="muted">
                  {" "}
                  {wr.reconnects} reconnect{wr.reconnects === 1 ? "" : "s"} · {formatBytes(wr.receivedBytes)} received · {wr.records.toLocaleString("en-US")} records
                </span>
              </>
            ) : (
              <span className="muted">not running</span>
            )}
          </dd>
          {wr?.lastError ? (
            <>
              <dt>Last error</dt>
              <dd className="error-text" data-testid="walreceiver-error">{wr.lastError}</dd>
            </>
          ) : null}
          <CompactionFact tenantId={tenantId} timelineId={t.id} last={t.compaction} />
        </dl>
      </section>

      <section className="card">
        <div className="stats">
          <Stat label="Last record LSN" title="last_record_lsn: end of the last WAL record ingested" testId="last-record-lsn">
            <Mono>{t.lastRecordLsn}</Mono>
          </Stat>
          <Stat label="Disk consistent LSN" title="disk_consistent_lsn: WAL up to here is durable in the layer store" testId="disk-consistent-lsn">
            <Mono>{t.diskConsistentLsn}</Mono>
          </Stat>
          <Stat label="Primary flush LSN" title="pg_current_wal_flush_lsn() on the primary, as last reported to the WAL receiver" testId="primary-flush-lsn">
            {t.primaryFlushLsn ? <Mono>{t.primaryFlushLsn}</Mono> : <span className="muted">—</span>}
          </Stat>
          <Stat label="Lag" title="primary flush LSN − last record LSN" testId="lag">
            {t.lagBytes === null ? <span className="muted">—</span> : formatBytes(t.lagBytes)}
          </Stat>
          <Stat label="Data size" title="all relation forks of all databases at the last record LSN" testId="logical-size">
            {t.logicalSizeBytes === null ? <span className="muted">—</span> : formatBytes(t.logicalSizeBytes)}
          </Stat>
          <Stat label="Storage" title="what the timeline takes on the pageserver's disk, its history included" testId="physical-size">
            {formatBytes(t.physicalSizeBytes)}
          </Stat>
        </div>
      </section>

      <EndpointsPanel tenantId={tenantId} branches={[t]} title="Endpoint" />

      <section className="card">
        <h2>WAL progress</h2>
        <LsnChart tenantId={tenantId} timelineId={timelineId} />
      </section>
    </>
  );
}
