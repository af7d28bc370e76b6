"use client";
// The tenant's branch tree, drawn with @xyflow/react: one node per timeline (name and
// last_record_lsn), an edge from each parent to its child labelled with the LSN it branched at.
// Top-down layout by depth; leaves get their own column and a parent sits centred above its
// children. Read-only (no dragging, connecting or selecting); clicking a node opens its timeline.
//
// Test hooks: the container is [data-testid="branch-tree"] with data-nodes/data-edges; each node
// holds [data-testid="branch-node"][data-timeline-name]; each edge label is [data-testid="branch-edge-label"].
import { ReactFlow, type Edge, type Node } from "@xyflow/react";
import "@xyflow/react/dist/style.css";
import { useRouter } from "next/navigation";
import { useMemo } from "react";

/** What the tree needs of a timeline (timelines.list and branches.list both provide it). */
export interface TreeTimeline {
  id: string;
  name: string;
  parentTimelineId: string | null;
  ancestorLsn: string;
  lastRecordLsn: string;
  createdAt: string;
}

const NODE_WIDTH = 170;
const COLUMN = 200;
const ROW = 110;

export function layoutTree(timelines: TreeTimeline[]): { nodes: Node[]; edges: Edge[] } {
  const ids = new Set(timelines.map((t) => t.id));
  const children = new Map<string, TreeTimeline[]>();
  const roots: TreeTimeline[] = [];
  const byCreation = [...timelines].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  for (const t of byCreation) {
    // a parent outside the list (should not happen) makes the timeline a root of its own
    if (t.parentTimelineId && ids.has(t.parentTimelineId)) {
      const list = children.get(t.parentTimelineId) ?? [];
      list.push(t);
      children.set(t.parentTimelineId, list);
    } else {
      roots.push(t);
    }
  }

  const nodes: Node[] = [];
  const edges: Edge[] = [];
  let nextColumn = 0;
  const seen = new Set<string>();
  /** places the subtree of `t` and returns the x of its node */
  const place = (t: TreeTimeline, depth: number): number => {
    seen.add(t.id);
    const kids = (children.get(t.id) ?? []).filter((k) => !seen.has(k.id));
    let x: number;
    if (kids.length === 0) {
      x = nextColumn * COLUMN;
      nextColumn++;
    } else {
      const xs = kids.map((k) => place(k, depth + 1));
      x = (xs[0]! + xs[xs.length - 1]!) / 2;
      for (const k of kids) {
        edges.push({
          id: `${t.id}->${k.id}`,
          source: t.id,
          target: k.id,
          label: k.ancestorLsn,
          labelStyle: { fontFamily: "var(--mono)", fontSize: 11 },
          labelBgPadding: [4, 2],
          labelBgBorderRadius: 4,
          data: { lsn: k.ancestorLsn },
        });
      }
    }
    nodes.push({
      id: t.id,
      position: { x, y: depth * ROW },
      data: {
        label: (
          <div data-testid="branch-node" data-timeline-id={t.id} data-timeline-name={t.name} title={`${t.name} · ${t.id}`}>
            <div className="branch-node-name">{t.name}</div>
            <code className="mono branch-node-lsn">{t.lastRecordLsn}</code>
          </div>
        ),
      },
      style: { width: NODE_WIDTH },
      className: "branch-node",
    });
    return x;
  };
  for (const r of roots) place(r, 0);
  return { nodes, edges };
}

export function BranchTree({ tenantId, timelines }: { tenantId: string; timelines: TreeTimeline[] }) {
  const router = useRouter();
  const { nodes, edges } = useMemo(() => layoutTree(timelines), [timelines]);
  // remount (and so fit the view again) when the set of timelines changes, not on every poll
  const shape = useMemo(() => timelines.map((t) => `${t.id}:${t.parentTimelineId ?? ""}`).sort().join(","), [timelines]);

  if (timelines.length === 0) return <p className="empty">No timelines.</p>;
  return (
    <div className="branch-tree" data-testid="branch-tree" data-nodes={nodes.length} data-edges={edges.length}>
      <ReactFlow
        key={shape}
        nodes={nodes}
        edges={edges}
        fitView
        fitViewOptions={{ padding: 0.2, maxZoom: 1.2 }}
        minZoom={0.2}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={false}
        edgesFocusable={false}
        zoomOnScroll={false}
        preventScrolling={false}
        onNodeClick={(_, node) => router.push(`/tenants/${tenantId}/timelines/${node.id}`)}
      />
    </div>
  );
}
