"use client";
// The timeline's compaction: its last pass since the pageserver started, and a button that runs
// one now (a history cut: written blocks' pages stored as images, their older versions moved aside,
// so full backups and endpoint starts read images).
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { Mono } from "@/components/common/Mono";
import { formatTimestamp } from "@/lib/format";
import { useTRPC } from "@/lib/trpc";

interface LastPass {
  at: string;
  lsn: string;
  images: number;
  movedVersions: number;
  stopped: boolean;
}

export function CompactionFact({ tenantId, timelineId, last }: { tenantId: string; timelineId: string; last: LastPass | null }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const compact = useMutation(
    trpc.timelines.compact.mutationOptions({
      onSuccess: () => queryClient.invalidateQueries({ queryKey: trpc.timelines.get.queryKey({ tenantId, timelineId }) }),
    }),
  );
  return (
    <>
      <dt>Compaction</dt>
      <dd data-testid="compaction">
        {last ? (
          <span data-testid="compaction-last">
            last pass at <Mono>{last.lsn}</Mono>: {last.images.toLocaleString("en-US")} block images, {last.movedVersions.toLocaleString("en-US")} versions moved to history
            {last.stopped ? " (stopped early)" : ""}
            <span className="muted"> · {formatTimestamp(last.at)}</span>
          </span>
        ) : (
          <span className="muted">no pass since the pageserver started</span>
        )}{" "}
        <button type="button" className="button button-small" data-testid="compact-now" disabled={compact.isPending} onClick={() => compact.mutate({ tenantId, timelineId })}>
          {compact.isPending ? "Compacting…" : "Compact now"}
        </button>
        {compact.isError ? <ErrorNotice title="Could not compact the timeline." error={compact.error} /> : null}
      </dd>
    </>
  );
}
