// "/tenants/[id]/timelines/[timelineId]": one timeline, its WAL receiver and its live LSN progress.
import type { Metadata } from "next";
import { TimelineDetail } from "@/components/timelines/TimelineDetail";

type Props = { params: Promise<{ id: string; timelineId: string }> };

export async function generateMetadata({ params }: Props): Promise<Metadata> {
  const { timelineId } = await params;
  return { title: `Timeline ${timelineId.slice(0, 8)}` };
}

export default async function TimelinePage({ params }: Props) {
  const { id, timelineId } = await params;
  return <TimelineDetail tenantId={id} timelineId={timelineId} />;
}
