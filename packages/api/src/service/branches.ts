// Branches: new timelines that start at an LSN of a parent timeline and read through it below
// that point. Creation copies no data (an empty store whose reads fall through to the parent),
// so it is O(1) in database size. The LSN is validated against what the parent can serve and
// rounded down to a record boundary; the branch reports the LSN it actually used. Deleting a
// branch removes its storage and its stopped endpoints; one with branches of its own or a running
// endpoint is refused.
import { createTimelineStorage, formatLsn, generateId, type Lsn, parseLsn, removeTimelineStorage, TenantManager, WaitLsnTimeoutError } from "@strata/core";
import type { Database } from "../db.ts";
import { ConflictError, InvalidInputError, NotFoundError, isUniqueViolation } from "../errors.ts";
import { branchDeleteBlocker, removeBranch } from "./branch-removal.ts";
import { timelineView, type TenantService, type TimelineView } from "./tenants.ts";

export interface CreateBranchInput {
  tenantId: string;
  name: string;
  parentTimelineId?: string;
  /** the parent by branch name (instead of parentTimelineId) */
  parentBranch?: string;
  lsn?: string;
  /** ISO time: branch at the last commit at or before it */
  at?: string;
}

const BRANCH_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export class BranchService {
  constructor(
    private readonly db: Database,
    private readonly dataDir: string,
    private readonly tenants: TenantService,
    private readonly manager: TenantManager,
    private readonly waitForParentMs = 10_000,
  ) {}

  async create(input: CreateBranchInput): Promise<TimelineView & { requestedLsn: string }> {
    await this.tenants.get(input.tenantId);
    if (!BRANCH_NAME.test(input.name)) throw new InvalidInputError(`invalid branch name "${input.name}": use letters, digits, '_', '.', '-' (max 63)`);
    if (input.lsn !== undefined && input.at !== undefined) throw new InvalidInputError("give either an LSN or a time, not both");
    if (input.parentTimelineId !== undefined && input.parentBranch !== undefined) throw new InvalidInputError("give either a parent timeline id or a parent branch name, not both");
    const parentRow = input.parentTimelineId
      ? await this.db.timeline.findFirst({ where: { id: input.parentTimelineId, tenantId: input.tenantId } })
      : input.parentBranch !== undefined
        ? await this.db.timeline.findFirst({ where: { name: input.parentBranch, tenantId: input.tenantId } })
        : await this.db.timeline.findFirst({ where: { tenantId: input.tenantId, parentTimelineId: null }, orderBy: { createdAt: "asc" } });
    if (!parentRow || parentRow.state !== "active") {
      const which = input.parentTimelineId ? `parent timeline ${input.parentTimelineId}` : input.parentBranch !== undefined ? `parent branch "${input.parentBranch}"` : "main timeline";
      throw new NotFoundError(`${which} not found in tenant ${input.tenantId}`);
    }
    const parent = this.manager.get(input.tenantId, parentRow.id);
    if (!parent) throw new NotFoundError(`parent timeline ${parentRow.id} is not attached`);
    let markers = await parent.store.readMarkers();

    let requested: Lsn;
    if (input.at !== undefined) {
      const time = Date.parse(input.at);
      if (Number.isNaN(time)) throw new InvalidInputError(`invalid time "${input.at}": expected an ISO 8601 timestamp`);
      const found = await parent.reader.lsnForTime(time, markers.lastRecordLsn);
      if (found === undefined) throw new InvalidInputError(`no transaction committed at or before ${new Date(time).toISOString()} on timeline ${parentRow.id}`);
      requested = found;
    } else if (input.lsn !== undefined) {
      requested = parseLsn(input.lsn);
    } else {
      // "latest": everything the parent's WAL source has flushed, so a commit acknowledged before
      // this request is in the branch even while ingest is still behind it (manager.latestLsn);
      // waited for like an LSN given
      requested = await this.manager.latestLsn(input.tenantId, parentRow.id);
    }
    if (requested < markers.startLsn) {
      throw new InvalidInputError(`LSN ${formatLsn(requested)} is below the first readable LSN ${formatLsn(markers.startLsn)} of timeline ${parentRow.id}`);
    }
    if (requested > markers.lastRecordLsn) {
      try {
        markers = await this.manager.waitForLsn(input.tenantId, parentRow.id, requested, this.waitForParentMs);
      } catch (err) {
        if (err instanceof WaitLsnTimeoutError) {
          markers = await parent.store.readMarkers();
          if (input.lsn === undefined && input.at === undefined) {
            throw new InvalidInputError(
              `timeline ${parentRow.id} has not ingested its source's WAL up to ${formatLsn(requested)} yet (last_record_lsn ${formatLsn(markers.lastRecordLsn)}): ` +
                `try again once it has caught up, or give an LSN it has`,
            );
          }
          throw new InvalidInputError(`LSN ${formatLsn(requested)} is beyond what timeline ${parentRow.id} has ingested (last_record_lsn ${formatLsn(markers.lastRecordLsn)})`);
        }
        throw err;
      }
    }
    const lsn = await parent.reader.roundToRecordBoundary(requested);
    if (lsn < markers.startLsn) throw new InvalidInputError(`LSN ${formatLsn(requested)} lies in a record that begins before the first readable LSN ${formatLsn(markers.startLsn)}`);

    const id = generateId();
    try {
      await this.db.timeline.create({
        data: { id, tenantId: input.tenantId, name: input.name, parentTimelineId: parentRow.id, ancestorLsn: lsn, state: "creating" },
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`a branch named "${input.name}" already exists in tenant ${input.tenantId}`);
      throw err;
    }
    try {
      // a delete of the parent claims it before it looks for branches: one of the two sees the other
      const parentNow = await this.db.timeline.findUnique({ where: { id: parentRow.id } });
      if (parentNow?.state !== "active") throw new NotFoundError(`parent branch ${parentRow.name} is being deleted`);
      await createTimelineStorage(this.dataDir, input.tenantId, id, lsn);
      await this.manager.attach(input.tenantId, [{ id, parentTimelineId: parentRow.id, ancestorLsn: lsn }]);
      const row = await this.db.timeline.update({ where: { id }, data: { state: "active" } });
      return { ...timelineView(row), requestedLsn: formatLsn(requested) };
    } catch (err) {
      await this.manager.detachTimeline(input.tenantId, id).catch(() => {});
      await removeTimelineStorage(this.dataDir, input.tenantId, id).catch(() => {});
      await this.db.timeline.delete({ where: { id } }).catch(() => {});
      throw err;
    }
  }

  /**
   * Deletes a branch: its timeline's storage, its stopped endpoints' rows and data directories.
   * Refused (CONFLICT) while it has branches of its own (their reads fall through to it) or an
   * endpoint that is not stopped; the main timeline goes only with its tenant. The branch is
   * claimed (state "deleting") before those checks, and branch creation and endpoint start check
   * the state after writing their own rows, so neither can slip past a delete. A delete a crash
   * interrupted is finished (or undone) by TenantService.recover.
   */
  async delete(input: { tenantId: string; branch: string }): Promise<{ id: string; name: string; deleted: true }> {
    await this.tenants.get(input.tenantId);
    const row = /^[0-9a-f]{32}$/.test(input.branch)
      ? await this.db.timeline.findFirst({ where: { tenantId: input.tenantId, id: input.branch } })
      : await this.db.timeline.findFirst({ where: { tenantId: input.tenantId, name: input.branch } });
    if (!row || (row.state !== "active" && row.state !== "deleting")) throw new NotFoundError(`branch ${input.branch} not found in tenant ${input.tenantId}`);
    if (row.parentTimelineId === null) throw new InvalidInputError(`${row.name} is the tenant's main timeline: delete the tenant instead`);
    const claimed = await this.db.timeline.updateMany({ where: { id: row.id, state: "active" }, data: { state: "deleting" } });
    if (claimed.count === 0) throw new ConflictError(`branch ${row.name} is already being deleted`);
    try {
      const blocker = await branchDeleteBlocker(this.db, row.id);
      if (blocker) throw new ConflictError(`branch ${row.name} ${blocker}`);
    } catch (err) {
      await this.db.timeline.update({ where: { id: row.id }, data: { state: "active" } });
      throw err;
    }
    await this.manager.detachTimeline(input.tenantId, row.id);
    await removeBranch(this.db, this.dataDir, input.tenantId, row.id);
    return { id: row.id, name: row.name, deleted: true };
  }

  /** The tenant's timelines as a tree: each with its parent, branch LSN and progress. */
  async list(tenantId: string) {
    await this.tenants.get(tenantId);
    const rows = await this.db.timeline.findMany({ where: { tenantId, state: "active" }, orderBy: { createdAt: "asc" } });
    return Promise.all(
      rows.map(async (row) => {
        const markers = await this.manager.markers(tenantId, row.id);
        return { ...timelineView(row), lastRecordLsn: formatLsn(markers?.lastRecordLsn ?? 0n), startLsn: formatLsn(markers?.startLsn ?? 0n) };
      }),
    );
  }
}
