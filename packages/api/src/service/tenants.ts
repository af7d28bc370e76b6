// Tenant lifecycle. Create is race-free and atomic: the metadata row is claimed first (the
// primary key decides the one winner among concurrent creates), then the storage directory is
// built atomically, then the row is marked active. Nothing runs for a tenant before that commit.
// A crash in between leaves a "creating" row that `recover()` rolls back at the next start.
import { createTenantStorage, parsePostgresUrl, removeTimelineStorage, failpoint, formatLsn, generateId, isValidId, listTenantStorage, removeTempStorage, removeTenantStorage, TenantStorageExists } from "@strata/core";
import type { Database } from "../db.ts";
import { branchDeleteBlocker, removeBranch } from "./branch-removal.ts";
import { ConflictError, InvalidInputError, NotFoundError, PrimaryRequestError, isUniqueViolation } from "../errors.ts";

export interface TimelineView {
  id: string;
  tenantId: string;
  name: string;
  parentTimelineId: string | null;
  ancestorLsn: string;
  state: string;
  createdAt: string;
}

export interface TenantView {
  id: string;
  /** what operators call it, if it was given one */
  name: string | null;
  state: string;
  createdAt: string;
  timelineCount: number;
}

type TimelineRow = { id: string; tenantId: string; name: string; parentTimelineId: string | null; ancestorLsn: bigint; state: string; createdAt: Date };

export function timelineView(row: TimelineRow): TimelineView {
  return {
    id: row.id,
    tenantId: row.tenantId,
    name: row.name,
    parentTimelineId: row.parentTimelineId,
    ancestorLsn: formatLsn(row.ancestorLsn),
    state: row.state,
    createdAt: row.createdAt.toISOString(),
  };
}

/**
 * A tenant name: 1-63 letters, digits, '_', '-' or '.', starting with a letter or digit, and not
 * shaped like a tenant id (32 hex characters), so that a name or an id given where either may be
 * is never ambiguous.
 */
export function checkTenantName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) {
    throw new InvalidInputError(`invalid tenant name "${name}": use 1-63 letters, digits, '_', '-' or '.', starting with a letter or digit`);
  }
  if (isValidId(name)) throw new InvalidInputError(`invalid tenant name "${name}": it looks like a tenant id (32 hex characters)`);
}

export interface CreateTenantOptions {
  /** a unique name for the tenant */
  name?: string;
  /** follow this primary (postgres:// URL) as the main timeline, after importing its base backup */
  fromPrimary?: string;
  /** physical replication slot name on the primary (default strata_<tenant>_<timeline prefix>) */
  slot?: string;
}

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

interface ImportProgress {
  bytes: number;
  totalBytes: number | null;
  startedAt: number;
}

export interface TenantHooks {
  /** imports the primary's base backup into the new timeline (storage exists, tenant not active yet) */
  importTimeline?(tenantId: string, timelineId: string, primaryUrl: string, slot: string, onProgress?: (bytes: number, totalBytes: number | null) => void): Promise<unknown>;
  /** fills the new tenant's main timeline with an empty cluster (initdb) when there is no primary */
  bootstrapTimeline?(tenantId: string, timelineId: string): Promise<unknown>;
  /** called after a tenant's creation committed: start its timelines */
  onTenantActive?(tenantId: string): Promise<void>;
  /** called before a tenant's storage is removed: stop everything it runs */
  onTenantDeleting?(tenantId: string): Promise<void>;
  /** drops the replication slot a deleted tenant's timeline had on its primary (after onTenantDeleting) */
  releasePrimarySlot?(tenantId: string, timelineId: string, primaryUrl: string, slot: string): Promise<unknown>;
}

export interface TenantDeleted {
  /** what deletion could not clean up outside Strata (a replication slot left on a primary) */
  warnings: string[];
}

export class TenantService {
  private readonly inFlight = new Set<string>();
  /** base backup imports running in create(), by tenant id */
  private readonly imports = new Map<string, ImportProgress>();

  constructor(
    private readonly db: Database,
    private readonly dataDir: string,
    private readonly hooks: TenantHooks = {},
  ) {}

  async list(): Promise<TenantView[]> {
    const rows = await this.db.tenant.findMany({
      where: { state: "active" },
      orderBy: { createdAt: "asc" },
      include: { _count: { select: { timelines: true } } },
    });
    return rows.map((r) => ({ id: r.id, name: r.name, state: r.state, createdAt: r.createdAt.toISOString(), timelineCount: r._count.timelines }));
  }

  async get(id: string): Promise<TenantView & { timelines: TimelineView[] }> {
    if (!isValidId(id)) throw new InvalidInputError(`invalid tenant id "${id}": expected 32 hex characters`);
    const row = await this.db.tenant.findUnique({ where: { id }, include: { timelines: { orderBy: { createdAt: "asc" } } } });
    if (!row || row.state !== "active") throw new NotFoundError(`tenant ${id} not found`);
    return {
      id: row.id,
      name: row.name,
      state: row.state,
      createdAt: row.createdAt.toISOString(),
      timelineCount: row.timelines.length,
      timelines: row.timelines.map(timelineView),
    };
  }

  async create(requestedId?: string, options: CreateTenantOptions = {}): Promise<TenantView & { timelines: TimelineView[] }> {
    const id = requestedId ?? generateId();
    if (!isValidId(id)) throw new InvalidInputError(`invalid tenant id "${id}": expected 32 lowercase hex characters`);
    if (options.name !== undefined) {
      checkTenantName(options.name);
      const named = await this.db.tenant.findUnique({ where: { name: options.name } });
      if (named) throw new ConflictError(`a tenant named "${options.name}" already exists (${named.id})`);
    }
    const timelineId = generateId();
    let slot: string | undefined;
    if (options.fromPrimary !== undefined) {
      try {
        parsePostgresUrl(options.fromPrimary);
      } catch (err) {
        throw new InvalidInputError(`invalid primary "${options.fromPrimary}": ${(err as Error).message}`);
      }
      slot = options.slot ?? `strata_${id}_${timelineId.slice(0, 16)}`;
      if (!SLOT_NAME.test(slot)) throw new InvalidInputError(`invalid slot name "${slot}": use 1-63 lowercase letters, digits and underscores`);
      const owner = await this.db.timeline.findUnique({ where: { slotName: slot } });
      if (owner) throw new ConflictError(`replication slot "${slot}" is already used by tenant ${owner.tenantId}`);
    }
    if (this.inFlight.has(id)) throw new ConflictError(`tenant ${id} is already being created`);
    this.inFlight.add(id);
    try {
      try {
        await this.db.tenant.create({ data: { id, name: options.name ?? null, state: "creating" } });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        // the id or the name: whichever is taken (by a create that raced this one)
        if (options.name !== undefined && !(await this.db.tenant.findUnique({ where: { id } }))) {
          throw new ConflictError(`a tenant named "${options.name}" already exists`);
        }
        throw new ConflictError(`tenant ${id} already exists`);
      }
      // the main timeline's row from the start (not active yet): a crash during the import leaves
      // the primary and slot on record, so recover() can drop a slot the import had created
      try {
        await this.db.timeline.create({
          data: { id: timelineId, tenantId: id, name: "main", ancestorLsn: 0n, state: "creating", primaryUrl: options.fromPrimary ?? null, slotName: slot ?? null },
        });
      } catch (err) {
        await this.db.tenant.delete({ where: { id } }).catch(() => {});
        if (isUniqueViolation(err)) throw new ConflictError(`replication slot "${slot}" is already used by another tenant`);
        throw err;
      }
      try {
        await createTenantStorage(this.dataDir, id, timelineId);
      } catch (err) {
        await this.discardCreated(id).catch(() => {});
        if (err instanceof TenantStorageExists) throw new ConflictError(`tenant ${id} already exists on disk`);
        throw err;
      }
      failpoint("tenant-create-after-storage");
      if (!options.fromPrimary && this.hooks.bootstrapTimeline) {
        try {
          await this.hooks.bootstrapTimeline(id, timelineId);
        } catch (err) {
          await removeTenantStorage(this.dataDir, id).catch(() => {});
          await this.discardCreated(id).catch(() => {});
          throw err;
        }
      }
      if (options.fromPrimary && slot) {
        const progress: ImportProgress = { bytes: 0, totalBytes: null, startedAt: Date.now() };
        this.imports.set(id, progress);
        try {
          await this.hooks.importTimeline?.(id, timelineId, options.fromPrimary, slot, (bytes, totalBytes) => {
            progress.bytes = bytes;
            progress.totalBytes = totalBytes;
          });
        } catch (err) {
          await removeTenantStorage(this.dataDir, id).catch(() => {});
          await this.discardCreated(id).catch(() => {});
          throw new PrimaryRequestError(`cannot import from primary: ${(err as Error).message}`);
        }
      }
      await this.db.$transaction([
        this.db.timeline.update({ where: { id: timelineId }, data: { state: "active" } }),
        this.db.tenant.update({ where: { id }, data: { state: "active" } }),
      ]);
    } finally {
      this.inFlight.delete(id);
      this.imports.delete(id);
    }
    await this.hooks.onTenantActive?.(id);
    return this.get(id);
  }

  /** Removes the rows of a tenant whose creation failed (its main timeline's, then its own). */
  private async discardCreated(id: string): Promise<void> {
    await this.db.$transaction([this.db.timeline.deleteMany({ where: { tenantId: id } }), this.db.tenant.delete({ where: { id } })]);
  }

  /** How far the base backup import of a tenant being created from a primary is, or null. */
  importProgress(id: string): { bytes: number; totalBytes: number | null; elapsedMs: number } | null {
    if (!isValidId(id)) throw new InvalidInputError(`invalid tenant id "${id}": expected 32 lowercase hex characters`);
    const progress = this.imports.get(id);
    return progress ? { bytes: progress.bytes, totalBytes: progress.totalBytes, elapsedMs: Date.now() - progress.startedAt } : null;
  }

  async delete(id: string): Promise<TenantDeleted> {
    if (!isValidId(id)) throw new InvalidInputError(`invalid tenant id "${id}": expected 32 hex characters`);
    if (this.inFlight.has(id)) throw new ConflictError(`tenant ${id} is being created or deleted`);
    const row = await this.db.tenant.findUnique({ where: { id } });
    if (!row || row.state !== "active") throw new NotFoundError(`tenant ${id} not found`);
    this.inFlight.add(id);
    try {
      // Mark first: a crash after this point is finished by recover(), never resurrected.
      await this.db.tenant.update({ where: { id }, data: { state: "deleting" } });
      await this.hooks.onTenantDeleting?.(id);
      const warnings = await this.releasePrimarySlots(id);
      await removeTenantStorage(this.dataDir, id);
      await this.db.$transaction([
        this.db.endpoint.deleteMany({ where: { tenantId: id } }),
        this.db.timeline.updateMany({ where: { tenantId: id }, data: { parentTimelineId: null } }),
        this.db.timeline.deleteMany({ where: { tenantId: id } }),
        this.db.tenant.delete({ where: { id } }),
      ]);
      return { warnings };
    } finally {
      this.inFlight.delete(id);
    }
  }

  /**
   * Drops the slots the tenant's timelines hold on the primaries they follow: a slot left behind
   * keeps every WAL segment from its position on, until the primary's disk is full. A primary
   * that is unreachable (or now another cluster) does not stop the deletion: what was left where
   * comes back as warnings.
   */
  private async releasePrimarySlots(tenantId: string): Promise<string[]> {
    const warnings: string[] = [];
    const followed = await this.db.timeline.findMany({ where: { tenantId, primaryUrl: { not: null }, slotName: { not: null } } });
    for (const row of followed) {
      try {
        await this.hooks.releasePrimarySlot?.(tenantId, row.id, row.primaryUrl!, row.slotName!);
      } catch (err) {
        warnings.push(
          `replication slot "${row.slotName}" was not dropped on the primary of timeline ${row.id}: ${(err as Error).message}. ` +
            `Drop it there (SELECT pg_drop_replication_slot('${row.slotName}')), or the primary keeps its WAL.`,
        );
      }
    }
    return warnings;
  }

  /**
   * Brings metadata and disk back in line after a crash: unfinished creates and deletes are
   * rolled back / completed, stray temp dirs and directories without an active row are removed.
   * Returns the active tenant ids.
   */
  async recover(): Promise<{ active: string[]; rolledBack: string[]; removedDirs: string[]; warnings: string[] }> {
    const removedDirs = await removeTempStorage(this.dataDir);
    const unfinished = await this.db.tenant.findMany({ where: { state: { in: ["creating", "deleting"] } } });
    const rolledBack: string[] = [];
    const warnings: string[] = [];
    for (const row of unfinished) {
      // a delete, or a create during its import, that crashed may have left its slot on the primary
      warnings.push(...(await this.releasePrimarySlots(row.id)));
      await removeTenantStorage(this.dataDir, row.id);
      await this.db.$transaction([
        this.db.endpoint.deleteMany({ where: { tenantId: row.id } }),
        this.db.timeline.updateMany({ where: { tenantId: row.id }, data: { parentTimelineId: null } }),
        this.db.timeline.deleteMany({ where: { tenantId: row.id } }),
        this.db.tenant.delete({ where: { id: row.id } }),
      ]);
      rolledBack.push(row.id);
    }
    // branches whose creation was interrupted
    for (const row of await this.db.timeline.findMany({ where: { state: "creating" } })) {
      await removeTimelineStorage(this.dataDir, row.tenantId, row.id);
      await this.db.timeline.delete({ where: { id: row.id } });
    }
    // branch deletes that were interrupted: finished, or undone if the branch turns out to be in use
    for (const row of await this.db.timeline.findMany({ where: { state: "deleting" } })) {
      if (await branchDeleteBlocker(this.db, row.id)) await this.db.timeline.update({ where: { id: row.id }, data: { state: "active" } });
      else await removeBranch(this.db, this.dataDir, row.tenantId, row.id);
    }
    const active = (await this.db.tenant.findMany({ where: { state: "active" }, select: { id: true } })).map((r) => r.id);
    const activeSet = new Set(active);
    for (const dirId of await listTenantStorage(this.dataDir)) {
      if (!activeSet.has(dirId)) {
        await removeTenantStorage(this.dataDir, dirId);
        removedDirs.push(dirId);
      }
    }
    return { active, rolledBack, removedDirs, warnings };
  }
}
