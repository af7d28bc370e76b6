"use client";
// A tenant's recent operations from the audit trail (every mutation through the API, the CLI or
// this dashboard): when, what, who, how it ended and how long it took. Polled.
import { useQuery } from "@tanstack/react-query";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { formatTimestamp } from "@/lib/format";
import { useTRPC, type Operation } from "@/lib/trpc";

const OPERATIONS_POLL_MS = 5_000;
const SHOWN = 20;

function took(op: Operation): string {
  if (!op.finishedAt) return "running";
  const ms = Date.parse(op.finishedAt) - Date.parse(op.startedAt);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function OperationsCard({ tenantId }: { tenantId: string }) {
  const trpc = useTRPC();
  const operations = useQuery({ ...trpc.operations.list.queryOptions({ tenantId, limit: SHOWN }), refetchInterval: OPERATIONS_POLL_MS });
  return (
    <section className="card" data-testid="operations-card">
      <h2>Recent operations</h2>
      {operations.isError ? <ErrorNotice title="Cannot load operations." error={operations.error} /> : null}
      {operations.data === undefined ? (
        <p className="muted">Loading operations…</p>
      ) : operations.data.length === 0 ? (
        <p className="empty">No operations yet.</p>
      ) : (
        <div className="table-scroll">
          <table className="table">
            <thead>
              <tr>
                <th>Started</th>
                <th>Operation</th>
                <th>By</th>
                <th>Result</th>
                <th>Took</th>
              </tr>
            </thead>
            <tbody>
              {operations.data.map((op) => (
                <tr key={op.id} data-testid="operation-row" data-kind={op.kind} data-result={op.result ?? "running"}>
                  <td className="created">{formatTimestamp(op.startedAt)}</td>
                  <td className="mono">{op.kind}</td>
                  <td className="nowrap">{op.actor}</td>
                  <td>
                    <span className={`badge badge-op-${op.result ?? "running"}`}>{op.result ?? "running"}</span>
                    {op.error ? <div className="error-text operation-error" title={op.error}>{op.error.split("\n")[0]}</div> : null}
                  </td>
                  <td className="num nowrap">{took(op)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
