// Cache of rebuilt pages, shared by every timeline of the process (CLOCK eviction, bounded in pages). An entry
// holds the page of one block and the LSN range it is valid for: from the newest version it was
// built from up to the last LSN known to have no newer version. Entries built at the latest LSN
// stay open-ended; the store's write hook closes them before a newer version becomes readable,
// so a hit never returns a page older than what the store holds at the requested LSN.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ } from "../reltag.ts";
import { ENTITY_KEY_LENGTH, KeySpace } from "../storage/keys.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";

/** validTo of an entry that no newer version has closed yet */
const OPEN = -1n;

interface Entry {
  page: Buffer;
  /** LSN of the newest version the page includes */
  fromLsn: Lsn;
  /** last LSN the page is valid for, or OPEN */
  validTo: Lsn;
  /** read since it last reached the front of the eviction order */
  used: boolean;
}

export class PageCache {
  private readonly entries = new Map<string, Entry>();
  private readonly watched = new WeakSet<TimelineStore>();
  /** entries per store: ingest into a store with none pays nothing for the cache */
  private readonly perStore = new Map<number, number>();
  hits = 0;
  misses = 0;

  constructor(readonly maxPages: number) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * The cached page of `entityKey` valid at `lsn`, if there is one: a copy, or with `shared` the
   * cached buffer itself for callers that only read it.
   */
  get(store: TimelineStore, entityKey: Buffer, lsn: Lsn, shared = false): Buffer | undefined {
    if (this.maxPages <= 0) return undefined;
    const key = cacheKey(store.id, entityKey);
    const entry = this.entries.get(key);
    if (!entry || lsn < entry.fromLsn || (entry.validTo !== OPEN && lsn > entry.validTo)) {
      this.misses++;
      return undefined;
    }
    // CLOCK (second chance): a hit only sets a flag; eviction moves flagged entries to the back
    entry.used = true;
    this.hits++;
    return shared ? entry.page : Buffer.from(entry.page);
  }

  /**
   * The newest cached page of `entityKey` that is older than `lsn` (its validity ended before it):
   * the cached buffer itself (callers copy it before changing it), and the last LSN it is valid
   * for. Replaying only the versions after that brings it to `lsn`, which is far cheaper than a
   * rebuild when a hot page is read again after a few changes.
   */
  getOlder(store: TimelineStore, entityKey: Buffer, lsn: Lsn): { page: Buffer; fromLsn: Lsn; validTo: Lsn } | undefined {
    if (this.maxPages <= 0) return undefined;
    const entry = this.entries.get(cacheKey(store.id, entityKey));
    if (!entry || entry.validTo === OPEN || entry.validTo >= lsn) return undefined;
    entry.used = true;
    return { page: entry.page, fromLsn: entry.fromLsn, validTo: entry.validTo };
  }

  /**
   * Remembers a page rebuilt at `lsn` whose newest version is at `fromLsn`. `openEnded` says the
   * read saw the whole store at its latest LSN with no write in between (see TimelineStore.writeToken).
   */
  put(store: TimelineStore, entityKey: Buffer, page: Buffer, fromLsn: Lsn, lsn: Lsn, openEnded: boolean): void {
    if (this.maxPages <= 0 || page.length !== BLCKSZ) return;
    this.watch(store);
    const key = cacheKey(store.id, entityKey);
    if (!this.entries.delete(key)) this.perStore.set(store.id, (this.perStore.get(store.id) ?? 0) + 1);
    this.entries.set(key, { page: Buffer.from(page), fromLsn, validTo: openEnded ? OPEN : lsn, used: false });
    while (this.entries.size > this.maxPages) {
      const [oldestKey, oldest] = this.entries.entries().next().value!;
      if (oldest.used) {
        oldest.used = false;
        this.entries.delete(oldestKey);
        this.entries.set(oldestKey, oldest);
      } else this.remove(oldestKey);
    }
  }

  /** Drops every entry (e.g. to measure cold reads). */
  clear(): void {
    this.entries.clear();
    this.perStore.clear();
  }

  private remove(key: string) {
    if (!this.entries.delete(key)) return;
    const storeId = Number(key.slice(0, key.indexOf(":")));
    const left = (this.perStore.get(storeId) ?? 1) - 1;
    if (left > 0) this.perStore.set(storeId, left);
    else this.perStore.delete(storeId);
  }

  private watch(store: TimelineStore) {
    if (this.watched.has(store)) return;
    this.watched.add(store);
    const prefix = `${store.id}:`;
    store.onWrite((storeKey) => {
      if (storeKey === undefined) {
        for (const key of [...this.entries.keys()]) if (key.startsWith(prefix)) this.remove(key);
        return;
      }
      // only relation blocks are cached
      if (storeKey[0] !== KeySpace.RelBlock || !this.perStore.has(store.id)) return;
      const key = cacheKey(store.id, storeKey.subarray(0, ENTITY_KEY_LENGTH));
      const entry = this.entries.get(key);
      if (!entry) return;
      const versionLsn = storeKey.readBigUInt64BE(ENTITY_KEY_LENGTH);
      if (versionLsn <= entry.fromLsn) this.remove(key);
      else if (entry.validTo === OPEN || entry.validTo >= versionLsn) entry.validTo = versionLsn - 1n;
    });
  }
}

function cacheKey(storeId: number, entityKey: Buffer): string {
  return `${storeId}:${entityKey.toString("latin1")}`;
}

/** STRATA_PAGE_CACHE_MB (default 128 MB; 0 turns the cache off). */
export const sharedPageCache = new PageCache(Math.floor((Number(process.env.STRATA_PAGE_CACHE_MB ?? 128) * 1024 * 1024) / BLCKSZ));
