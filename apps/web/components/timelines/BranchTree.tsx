// PLACEHOLDER — the branch tree goes here.
// To do: render the tenant's timelines as a graph with @xyflow/react (import
// "@xyflow/react/dist/style.css"): one node per timeline, an edge from parent to child labelled
// with the ancestor LSN. Must be a client component ("use client"). The timelines arrive as props
// from TenantDetail, so this needs no extra query unless the branches API gives more detail.
import type { Timeline } from "@/lib/trpc";

export function BranchTree({ timelines }: { timelines: Timeline[] }) {
  return (
    <div className="slot" data-testid="branch-tree-slot">
      <strong>Branch tree: coming soon</strong>
      <span>
        A graph of {timelines.length === 1 ? "this tenant's timeline" : `its ${timelines.length} timelines`} and the LSNs
        they branched at.
      </span>
    </div>
  );
}
