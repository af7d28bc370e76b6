// Which endpoints are on record as active: their postgres may be running on the branch, whose
// timeline then takes its WAL from it.
import type { Database } from "../db.ts";

/** Endpoint states from the start until the stop has finished. */
export const ACTIVE_ENDPOINT_STATES = ["starting", "running", "stopping"];

/** The branch's active endpoint (at most one), or null. */
export function activeEndpointOn(db: Database, timelineId: string) {
  return db.endpoint.findFirst({ where: { timelineId, state: { in: ACTIVE_ENDPOINT_STATES } } });
}
