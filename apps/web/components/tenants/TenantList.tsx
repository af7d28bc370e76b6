"use client";
// The tenants table on the home page; each tenant links to its own page.
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { Mono } from "@/components/common/Mono";
import { formatTimestamp } from "@/lib/format";
import { useTRPC } from "@/lib/trpc";
import { DeleteTenantButton } from "./DeleteTenantButton";

const TENANTS_POLL_MS = 10_000;

export function TenantList() {
  const trpc = useTRPC();
  const tenants = useQuery({ ...trpc.tenants.list.queryOptions(), refetchInterval: TENANTS_POLL_MS });

  if (tenants.isPending) return <p className="muted">Loading tenants…</p>;
  return (
    <>
      {tenants.isError ? <ErrorNotice title="Cannot load tenants." error={tenants.error} /> : null}
      {tenants.data && tenants.data.length === 0 ? (
        <p className="empty" data-testid="tenants-empty">No tenants yet. Create one above, or run <code>strata tenant create</code>.</p>
      ) : null}
      {tenants.data && tenants.data.length > 0 ? (
        <div className="table-scroll">
          <table className={`table${tenants.isError ? " stale" : ""}`} data-testid="tenants-table">
            <thead>
              <tr>
                <th>Tenant id</th>
                <th>Name</th>
                <th>State</th>
                <th className="num">Timelines</th>
                <th>Created</th>
                <th aria-label="actions" />
              </tr>
            </thead>
            <tbody>
              {tenants.data.map((t) => (
                <tr key={t.id} data-testid="tenant-row" data-tenant-id={t.id}>
                  <td>
                    <Link href={`/tenants/${t.id}`} className="tenant-link">
                      <Mono>{t.id}</Mono>
                    </Link>
                  </td>
                  <td data-testid="tenant-name">{t.name ?? <span className="muted">—</span>}</td>
                  <td><span className={`badge badge-${t.state}`}>{t.state}</span></td>
                  <td className="num">{t.timelineCount}</td>
                  <td className="nowrap">{formatTimestamp(t.createdAt)}</td>
                  <td className="actions"><DeleteTenantButton tenantId={t.id} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : null}
    </>
  );
}
