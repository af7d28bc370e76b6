"use client";
// The tenant page: its summary, its timelines with their LSNs (polled), the branch tree with the
// form that creates branches, the compute endpoints on its branches, and a compact LSN chart of
// the root timeline.
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { Mono } from "@/components/common/Mono";
import { CreateBranchForm } from "@/components/branches/CreateBranchForm";
import { EndpointsPanel } from "@/components/endpoints/EndpointsPanel";
import { BranchTree } from "@/components/timelines/BranchTree";
import { LsnChart } from "@/components/timelines/LsnChart";
import { TimelineTable } from "@/components/timelines/TimelineTable";
import type { Timeline } from "@/lib/trpc";
import { errorCode } from "@/lib/errors";
import { formatBytes, formatTimestamp } from "@/lib/format";
import { OperationsCard } from "@/components/operations/OperationsCard";
import { useTRPC } from "@/lib/trpc";
import { DeleteTenantButton } from "./DeleteTenantButton";

const TIMELINES_POLL_MS = 5_000;

export function TenantDetail({ tenantId }: { tenantId: string }) {
  const trpc = useTRPC();
  const router = useRouter();
  const tenant = useQuery(trpc.tenants.get.queryOptions({ id: tenantId }));
  const timelines = useQuery({
    ...trpc.timelines.list.queryOptions({ tenantId }),
    enabled: tenant.isSuccess,
    refetchInterval: TIMELINES_POLL_MS,
  });

  if (tenant.isPending) return <p className="muted">Loading tenant…</p>;
  const t = tenant.data;
  if (!t) {
    const code = errorCode(tenant.error);
    const title = code === "NOT_FOUND" ? "Tenant not found." : code === "BAD_REQUEST" ? "Invalid tenant id." : "Cannot load tenant.";
    return (
      <>
        <ErrorNotice title={title} error={tenant.error} />
        <p>
          <Link href="/">← All tenants</Link>
        </p>
      </>
    );
  }

  return (
    <>
      {tenant.isError ? <ErrorNotice title="Cannot refresh tenant." error={tenant.error} /> : null}
      <section className="card">
        <div className="card-head">
          <div>
            <h1>Tenant {t.name ? <span className="strong" data-testid="tenant-title-name">{t.name}</span> : null} <Mono>{t.id}</Mono></h1>
            <p className="muted">
              <span className={`badge badge-${t.state}`}>{t.state}</span> created {formatTimestamp(t.createdAt)} ·{" "}
              <span title="what the tenant's timelines take on the pageserver's disk" data-testid="tenant-storage">{formatBytes(t.physicalSizeBytes)} stored</span>
            </p>
          </div>
          <DeleteTenantButton tenantId={t.id} onDeleted={() => router.push("/")} />
        </div>
      </section>

      <section className="card">
        <h2>Timelines</h2>
        {timelines.isError ? <ErrorNotice title="Cannot load timelines." error={timelines.error} /> : null}
        {timelines.data ? <TimelineTable tenantId={t.id} timelines={timelines.data} /> : timelines.isPending ? <p className="muted">Loading timelines…</p> : null}
      </section>

      <section className="card" data-testid="branches-card">
        <h2>Branches</h2>
        {timelines.data ? (
          <>
            <BranchTree tenantId={t.id} timelines={timelines.data} />
            <h3 className="subhead">Create branch</h3>
            <CreateBranchForm tenantId={t.id} timelines={timelines.data} />
          </>
        ) : (
          <p className="muted">Loading timelines…</p>
        )}
      </section>

      {timelines.data ? <EndpointsPanel tenantId={t.id} branches={timelines.data.filter((tl) => tl.state === "active")} /> : null}

      <section className="card">
        <WalProgress tenantId={t.id} timelines={timelines.data} />
      </section>

      <OperationsCard tenantId={t.id} />
    </>
  );
}

/** A compact live chart of the root (first) timeline, linking to its full page. */
function WalProgress({ tenantId, timelines }: { tenantId: string; timelines: Timeline[] | undefined }) {
  const root = timelines?.find((tl) => tl.parentTimelineId === null) ?? timelines?.[0];
  return (
    <>
      <div className="card-head">
        <h2>WAL progress{root ? <span className="muted"> · {root.name}</span> : null}</h2>
        {root ? <Link href={`/tenants/${tenantId}/timelines/${root.id}`}>Timeline details →</Link> : null}
      </div>
      {root ? (
        <LsnChart tenantId={tenantId} timelineId={root.id} compact />
      ) : timelines ? (
        <p className="empty">No timelines.</p>
      ) : (
        <p className="muted">Loading timelines…</p>
      )}
    </>
  );
}
