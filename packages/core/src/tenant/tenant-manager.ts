// The pageserver's live tenants: opens each active timeline's store when its tenant is attached
// (only after the tenant's creation committed) and closes them on detach/shutdown.
import { TimelineStore, type TimelineMarkers } from "../storage/timeline-store.ts";
import { timelineStoreDir } from "./tenant-storage.ts";

export interface TimelineHandle {
  tenantId: string;
  timelineId: string;
  store: TimelineStore;
}

export class TenantManager {
  private readonly timelines = new Map<string, TimelineHandle>();

  constructor(readonly dataDir: string) {}

  private key(tenantId: string, timelineId: string) {
    return `${tenantId}/${timelineId}`;
  }

  async attach(tenantId: string, timelineIds: string[]): Promise<void> {
    for (const timelineId of timelineIds) {
      const key = this.key(tenantId, timelineId);
      if (this.timelines.has(key)) continue;
      const store = await TimelineStore.open(timelineStoreDir(this.dataDir, tenantId, timelineId));
      this.timelines.set(key, { tenantId, timelineId, store });
    }
  }

  async detach(tenantId: string): Promise<void> {
    for (const [key, handle] of this.timelines) {
      if (handle.tenantId !== tenantId) continue;
      this.timelines.delete(key);
      await handle.store.close();
    }
  }

  get(tenantId: string, timelineId: string): TimelineHandle | undefined {
    return this.timelines.get(this.key(tenantId, timelineId));
  }

  async markers(tenantId: string, timelineId: string): Promise<TimelineMarkers | undefined> {
    return this.get(tenantId, timelineId)?.store.readMarkers();
  }

  get attachedTimelineCount(): number {
    return this.timelines.size;
  }

  async shutdown(): Promise<void> {
    for (const handle of this.timelines.values()) await handle.store.close();
    this.timelines.clear();
  }
}
