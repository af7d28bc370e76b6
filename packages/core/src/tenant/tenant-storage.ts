// On-disk layout of tenants under the pageserver's data directory:
//   <data>/tenants/<tenantId>/tenant.json
//   <data>/tenants/<tenantId>/timelines/<timelineId>/store   (classic-level)
// A tenant directory appears atomically (built under a temp name, fsynced, renamed), so a
// crash never leaves a half-created tenant that looks real.
import { constants, promises as fs } from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { TimelineStore } from "../storage/timeline-store.ts";

const TEMP_SUFFIX = ".___temp";

export class TenantStorageExists extends Error {}

export function tenantsDir(dataDir: string): string {
  return path.join(dataDir, "tenants");
}

export function tenantDir(dataDir: string, tenantId: string): string {
  return path.join(tenantsDir(dataDir), tenantId);
}

export function timelineStoreDir(dataDir: string, tenantId: string, timelineId: string): string {
  return path.join(tenantDir(dataDir, tenantId), "timelines", timelineId, "store");
}

async function fsyncDir(dir: string) {
  const handle = await fs.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}

/** Creates the tenant directory with an empty store for its first timeline, atomically. */
export async function createTenantStorage(dataDir: string, tenantId: string, timelineId: string): Promise<void> {
  const root = tenantsDir(dataDir);
  await fs.mkdir(root, { recursive: true });
  const final = tenantDir(dataDir, tenantId);
  if (await exists(final)) throw new TenantStorageExists(`tenant directory ${final} already exists`);
  const temp = path.join(root, `${tenantId}.${randomBytes(4).toString("hex")}${TEMP_SUFFIX}`);
  try {
    const storeDir = path.join(temp, "timelines", timelineId, "store");
    await fs.mkdir(path.dirname(storeDir), { recursive: true });
    const store = await TimelineStore.open(storeDir);
    await store.commit([], { lastRecordLsn: 0n, diskConsistentLsn: 0n, startLsn: 0n });
    await store.close();
    await fs.writeFile(path.join(temp, "tenant.json"), JSON.stringify({ id: tenantId, createdAt: new Date().toISOString() }) + "\n");
    await fsyncDir(temp);
    // rename() onto an existing non-empty directory fails, so a racing create cannot clobber.
    await fs.rename(temp, final);
    await fsyncDir(root);
  } catch (err) {
    await fs.rm(temp, { recursive: true, force: true });
    if ((err as NodeJS.ErrnoException).code === "ENOTEMPTY" || (err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new TenantStorageExists(`tenant directory ${final} already exists`);
    }
    throw err;
  }
}

/** Removes a tenant directory; renamed away first so a crash mid-delete leaves only a temp dir. */
export async function removeTenantStorage(dataDir: string, tenantId: string): Promise<void> {
  const final = tenantDir(dataDir, tenantId);
  if (!(await exists(final))) return;
  const doomed = path.join(tenantsDir(dataDir), `${tenantId}.${randomBytes(4).toString("hex")}.deleted${TEMP_SUFFIX}`);
  await fs.rename(final, doomed);
  await fs.rm(doomed, { recursive: true, force: true });
}

/** Tenant ids that have a complete directory on disk. */
export async function listTenantStorage(dataDir: string): Promise<string[]> {
  try {
    const names = await fs.readdir(tenantsDir(dataDir));
    return names.filter((n) => /^[0-9a-f]{32}$/.test(n));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

/** Removes leftovers of creates/deletes that a crash interrupted. */
export async function removeTempStorage(dataDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(tenantsDir(dataDir));
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (name.endsWith(TEMP_SUFFIX)) {
      await fs.rm(path.join(tenantsDir(dataDir), name), { recursive: true, force: true });
      removed.push(name);
    }
  }
  return removed;
}

/** Creates an empty store for a new timeline (a branch) that starts at `startLsn`, atomically. */
export async function createTimelineStorage(dataDir: string, tenantId: string, timelineId: string, startLsn: bigint): Promise<void> {
  const final = path.dirname(timelineStoreDir(dataDir, tenantId, timelineId));
  if (await exists(final)) throw new TenantStorageExists(`timeline directory ${final} already exists`);
  const temp = `${final}.${randomBytes(4).toString("hex")}${TEMP_SUFFIX}`;
  try {
    const store = await TimelineStore.open(path.join(temp, "store"));
    await store.commit([], { lastRecordLsn: startLsn, diskConsistentLsn: startLsn, startLsn });
    await store.close();
    await fsyncDir(temp);
    await fs.rename(temp, final);
    await fsyncDir(path.dirname(final));
  } catch (err) {
    await fs.rm(temp, { recursive: true, force: true });
    throw err;
  }
}

/** Removes a timeline's directory (and leftovers of interrupted creates of it). */
export async function removeTimelineStorage(dataDir: string, tenantId: string, timelineId: string): Promise<void> {
  const dir = path.join(tenantDir(dataDir, tenantId), "timelines");
  let names: string[] = [];
  try {
    names = await fs.readdir(dir);
  } catch {
    return;
  }
  for (const name of names) if (name === timelineId || name.startsWith(`${timelineId}.`)) await fs.rm(path.join(dir, name), { recursive: true, force: true });
}

/**
 * Bytes a directory tree takes on disk (allocated blocks, as du counts them; 0 when it does not
 * exist). Files that vanish while it walks (LevelDB replacing tables after a compaction) are
 * skipped.
 */
export async function diskUsageBytes(dir: string): Promise<number> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw err;
  }
  // (all of a directory's entries at once: one at a time, each lstat waited for its own turn of
  // an event loop that a catch-up keeps busy, and a listing took seconds)
  const sizes = await Promise.all(
    entries.map(async (entry) => {
      const child = path.join(dir, entry.name);
      if (entry.isDirectory()) return diskUsageBytes(child);
      try {
        return (await fs.lstat(child)).blocks * 512;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        return 0;
      }
    }),
  );
  let total = 0;
  for (const size of sizes) total += size;
  return total;
}
