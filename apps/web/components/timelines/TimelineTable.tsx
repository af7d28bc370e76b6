// A tenant's timelines with their WAL progress (LSNs as PostgreSQL prints them, "X/Y").
import Link from "next/link";
import { Mono } from "@/components/common/Mono";
import { formatBytes, formatTimestamp } from "@/lib/format";
import type { Timeline } from "@/lib/trpc";

export function TimelineTable({ tenantId, timelines }: { tenantId: string; timelines: Timeline[] }) {
  if (timelines.length === 0) return <p className="empty">This tenant has no timelines.</p>;
  const names = new Map(timelines.map((t) => [t.id, t.name]));
  return (
    <div className="table-scroll">
      <table className="table" data-testid="timelines-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Timeline id</th>
            <th>Parent</th>
            <th>Ancestor LSN</th>
            <th title="last_record_lsn: end of the last WAL record ingested">Last record LSN</th>
            <th title="disk_consistent_lsn: WAL up to here is durable in the layer store">Disk consistent LSN</th>
            <th title="all relation forks of all databases at the last record LSN">Data size</th>
            <th title="what the timeline takes on the pageserver's disk, its history included">Storage</th>
            <th>State</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {timelines.map((t) => (
            <tr key={t.id} data-testid="timeline-row" data-timeline-id={t.id} data-timeline-name={t.name}>
              <td className="strong">
                <Link href={`/tenants/${tenantId}/timelines/${t.id}`} data-testid="timeline-link">{t.name}</Link>
              </td>
              <td><Mono>{t.id}</Mono></td>
              <td>
                {t.parentTimelineId ? (
                  <span title={t.parentTimelineId}>{names.get(t.parentTimelineId) ?? <Mono>{t.parentTimelineId.slice(0, 8)}</Mono>}</span>
                ) : (
                  <span className="muted">—</span>
                )}
              </td>
              <td>{t.parentTimelineId ? <Mono>{t.ancestorLsn}</Mono> : <span className="muted">—</span>}</td>
              <td><Mono>{t.lastRecordLsn}</Mono></td>
              <td><Mono>{t.diskConsistentLsn}</Mono></td>
              <td className="nowrap" data-testid="timeline-logical-size">{t.logicalSizeBytes === null ? <span className="muted">—</span> : formatBytes(t.logicalSizeBytes)}</td>
              <td className="nowrap" data-testid="timeline-physical-size">{formatBytes(t.physicalSizeBytes)}</td>
              <td>
                <span className={`badge badge-${t.state}`}>{t.state}</span>
                {t.attached ? null : <span className="badge badge-detached" title="not loaded by the pageserver">detached</span>}
              </td>
              <td className="created">{formatTimestamp(t.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
