"use client";
// Live WAL progress of one timeline, from the pageserver's ~1/s samples (timelines.progress,
// polled every second): last_record_lsn, disk_consistent_lsn and the primary's flush LSN over
// time, as byte offsets from the first sample, plus the ingest rate (full version only).
//
// Test hooks: the container is [data-testid="lsn-chart"] with data-state
// (loading|empty|error|ready) and data-points (number of samples drawn).
import { useQuery } from "@tanstack/react-query";
import { Area, AreaChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { formatBytes, formatClock, formatLsnBytes } from "@/lib/format";
import { useTRPC, type ProgressSample } from "@/lib/trpc";

export const PROGRESS_POLL_MS = 1_000;

const COLORS = { last: "#1f5fa8", disk: "#1d8a4e", flush: "#c0362c", rate: "#7a4fb5" };
const MIB = 1024 * 1024;

interface Point {
  t: number;
  last: number;
  disk: number;
  flush: number | null;
  rate: number;
}

function toPoints(samples: ProgressSample[]): { base: number; points: Point[] } {
  const first = samples[0];
  const base = first
    ? Math.min(first.lastRecordBytes, first.diskConsistentBytes, first.primaryFlushBytes ?? Number.POSITIVE_INFINITY)
    : 0;
  const points = samples.map((s) => ({
    t: Date.parse(s.time),
    last: s.lastRecordBytes - base,
    disk: s.diskConsistentBytes - base,
    flush: s.primaryFlushBytes === null ? null : s.primaryFlushBytes - base,
    rate: s.ingestBytesPerSecond / MIB,
  }));
  return { base, points };
}

/** Offsets are shown in KiB while the whole chart spans less than 1 MiB, in MiB after that. */
function offsetFormatter(maxOffset: number): (v: number) => string {
  if (maxOffset < MIB) return (v) => `+${Math.round(v / 1024)} KiB`;
  return (v) => `+${(v / MIB).toFixed(maxOffset < 10 * MIB ? 1 : 0)} MiB`;
}

export function LsnChart({ tenantId, timelineId, compact = false }: { tenantId: string; timelineId: string; compact?: boolean }) {
  const trpc = useTRPC();
  const progress = useQuery({
    ...trpc.timelines.progress.queryOptions({ tenantId, timelineId }),
    refetchInterval: PROGRESS_POLL_MS,
  });

  const samples = progress.data ?? [];
  const state = progress.isPending ? "loading" : samples.length > 0 ? "ready" : progress.isError ? "error" : "empty";
  const height = compact ? 200 : 300;

  return (
    <div className="lsn-chart" data-testid="lsn-chart" data-state={state} data-points={samples.length}>
      {progress.isError ? <ErrorNotice title="Cannot load LSN progress." error={progress.error} /> : null}
      {state === "loading" ? <p className="muted">Loading LSN progress…</p> : null}
      {state === "empty" ? (
        <p className="empty chart-empty">No samples yet. The pageserver records one about every second while the timeline is attached.</p>
      ) : null}
      {state === "ready" ? <Charts samples={samples} height={height} compact={compact} /> : null}
    </div>
  );
}

function Charts({ samples, height, compact }: { samples: ProgressSample[]; height: number; compact: boolean }) {
  const { base, points } = toPoints(samples);
  const hasFlush = points.some((p) => p.flush !== null);
  const maxOffset = Math.max(...points.map((p) => Math.max(p.last, p.disk, p.flush ?? 0)), 1);
  const fmtOffset = offsetFormatter(maxOffset);
  const xAxis = (
    <XAxis dataKey="t" type="number" scale="time" domain={["dataMin", "dataMax"]} tickFormatter={formatClock} minTickGap={40} fontSize={11} />
  );
  const label = (t: unknown) => `${formatClock(Number(t))} UTC`;

  return (
    <>
      <p className="chart-caption muted">
        WAL position as bytes after <code className="mono">{formatLsnBytes(base)}</code> (first sample,{" "}
        {formatClock(points[0]!.t)} UTC) · {points.length} samples
      </p>
      <div className="chart-box" style={{ height }}>
        <ResponsiveContainer width="100%" height="100%" initialDimension={{ width: 600, height }}>
          <LineChart data={points} margin={{ top: 8, right: 16, bottom: 0, left: 8 }}>
            <CartesianGrid strokeDasharray="3 3" stroke="#e6eaf0" />
            {xAxis}
            <YAxis domain={[0, "auto"]} tickFormatter={fmtOffset} width={80} fontSize={11} />
            <Tooltip
              labelFormatter={label}
              formatter={(value) => (typeof value === "number" ? `${formatLsnBytes(value + base)} (${fmtOffset(value)})` : String(value))}
            />
            <Legend wrapperStyle={{ fontSize: 12 }} itemSorter={null} />
            <Line type="monotone" dataKey="disk" name="disk_consistent_lsn" stroke={COLORS.disk} strokeWidth={4} strokeOpacity={0.55} dot={false} isAnimationActive={false} />
            <Line type="monotone" dataKey="last" name="last_record_lsn" stroke={COLORS.last} strokeWidth={2} dot={false} isAnimationActive={false} />
            {hasFlush ? (
              <Line type="monotone" dataKey="flush" name="primary flush LSN" stroke={COLORS.flush} strokeWidth={1.5} strokeDasharray="5 3" dot={false} isAnimationActive={false} />
            ) : null}
          </LineChart>
        </ResponsiveContainer>
      </div>
      {compact ? null : (
        <>
          <h3 className="chart-title">Ingest rate</h3>
          <div className="chart-box" style={{ height: 160 }} data-testid="ingest-chart">
            <ResponsiveContainer width="100%" height="100%" initialDimension={{ width: 600, height: 160 }}>
              <AreaChart data={points} margin={{ top: 8, right: 16, bottom: 0, left: 8 }}>
                <CartesianGrid strokeDasharray="3 3" stroke="#e6eaf0" />
                {xAxis}
                <YAxis domain={[0, "auto"]} tickFormatter={(v: number) => `${v.toFixed(v < 10 ? 1 : 0)} MiB/s`} width={80} fontSize={11} />
                <Tooltip labelFormatter={label} formatter={(value) => (typeof value === "number" ? `${formatBytes(value * MIB)}/s` : String(value))} />
                <Area type="monotone" dataKey="rate" name="ingest" stroke={COLORS.rate} fill={COLORS.rate} fillOpacity={0.15} dot={false} isAnimationActive={false} />
              </AreaChart>
            </ResponsiveContainer>
          </div>
        </>
      )}
    </>
  );
}
