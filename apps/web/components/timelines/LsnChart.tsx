// PLACEHOLDER — the LSN progress chart goes here.
// To do: once the API exposes LSN progress history, query it here and draw last_record_lsn and
// disk_consistent_lsn over time with recharts (LineChart inside a ResponsiveContainer). Must be a
// client component ("use client").
export function LsnChart({ tenantId }: { tenantId: string }) {
  return (
    <div className="slot" data-testid="lsn-chart-slot" data-tenant-id={tenantId}>
      <strong>LSN chart: coming soon</strong>
      <span>last_record_lsn and disk_consistent_lsn over time, per timeline.</span>
    </div>
  );
}
