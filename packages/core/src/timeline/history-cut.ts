// History cuts (compaction): keeps the versions a read at the newest LSNs needs apart from the
// history below them. A relation block's versions live in key space 0x10, oldest first, and a
// forward scan (a full backup, an endpoint's first start) reads every one of them to reach the
// newest: after a few minutes of pgbench a block had 8-9 entries there, and a backup read 175k
// entries for 20k pages (1.3 s, against 0.15 s for pg_basebackup of the same database). A cut of
// a block at LSN L, a record boundary the timeline has durably ingested:
//   - with at least `minRecords` records above its newest base at or below L: stores its page at L
//     as an image at L (a base) and moves every version at or below L to the history key space 0x18;
//   - otherwise, with older versions below that base: moves just those;
// per group of blocks, same keys and values (TimelineStore.cutHistory: copies first, then one
// batch that deletes the originals and stores the images). Reads at or above the block's newest
// base in 0x10 find all they need there; a read below it finds nothing at or below its LSN there
// and reads 0x18 instead (TimelineStore.getReconstructChain, RelationScanner), where the history
// is whole. Nothing is deleted: every LSN reads the same page before and after a cut.
import { BACKGROUND_SLICE_MS, turnsEvery } from "../event-loop.ts";
import { failpoint } from "../failpoints.ts";
import type { Lsn } from "../lsn.ts";
import type { ForkNumber } from "../reltag.ts";
import type { PagesOfFork } from "../ingest/walingest.ts";
import { ENTITY_KEY_LENGTH, KeySpace, relBlockKey, storeKey } from "../storage/keys.ts";
import type { TimelineStore } from "../storage/timeline-store.ts";
import { imageValue, isBaseValue, isStoredPage, runLength, runNewestLsn, ValueKind } from "../storage/values.ts";
import type { PageReader } from "./page-reader.ts";
import { RelationScanner, settledPage } from "./relation-scan.ts";

/** Blocks cut per group (one write and sync of the page image files, one LevelDB batch of deletes and images). */
const DEFAULT_GROUP_BLOCKS = 256;

export interface HistoryCutOptions {
  /** records above its newest base for a block to get an image at the cut (default 1) */
  minRecords?: number;
  /** blocks per group (default 256) */
  groupBlocks?: number;
  /** bytes of versions per batch that copies them to history (default: TimelineStore's, 4 MB) */
  copyBatchBytes?: number;
  /**
   * Asked before each group (the first too): undefined to go on, or a promise to wait for first (the pass's
   * iterators are closed meanwhile, so a long wait pins nothing in LevelDB) that resolves to false
   * to stop there.
   */
  pause?: () => Promise<boolean> | undefined;
  /**
   * Rebuild long chains on the reader's redo workers while the pass reads the group's next blocks
   * (RelationScanner's parallelReplay); the group is written once all its pages are back.
   */
  parallelReplay?: boolean;
}

export interface HistoryCutResult {
  /** blocks that got an image at the cut */
  images: number;
  /** blocks whose versions below their newest base moved (it needed no image) */
  trimmed: number;
  /** versions moved to the history key space (an earlier cut's image at this cut's LSN is dropped instead) */
  moved: number;
  /** blocks left as they were: nothing to gain, past their relation's end (or dropped) at the LSN */
  unchanged: number;
  /** blocks whose page could not be rebuilt (a read of them reports why); left as they were */
  failed: number;
  /** the pass stopped before the last block (pause resolved to false) */
  stopped: boolean;
}

function compareForks(a: PagesOfFork, b: PagesOfFork): number {
  return a.rel.spcNode - b.rel.spcNode || a.rel.dbNode - b.rel.dbNode || a.rel.relNode - b.rel.relNode || a.fork - b.fork;
}

/** A block's 0x10 versions at or below a cut's LSN, as a cut plans them (keys only: values may be large). */
interface BlockVersions {
  /** the versions' LSNs, oldest first */
  lsns: Lsn[];
  /** index in `lsns` of the newest base (-1: none) */
  base: number;
  /** records above that base */
  records: number;
  /** a run of versions crosses the cut: the block is left alone */
  crossing: boolean;
}

/**
 * What a cut at `lsn` has to go on for blocks [first, last] of a relation fork: by block, its
 * versions at or below `lsn`, and where its newest base is. Values are read and dropped (a hot
 * block's history held hundreds of MB of runs).
 */
async function planBlocks(reader: PageReader, forkPages: PagesOfFork, first: number, last: number, lsn: Lsn): Promise<Map<number, BlockVersions>> {
  const out = new Map<number, BlockVersions>();
  const iterator = reader.store.db.iterator({ gte: storeKey(relBlockKey(forkPages.rel, forkPages.fork, first), 0n), lte: storeKey(relBlockKey(forkPages.rel, forkPages.fork, last), lsn), highWaterMarkBytes: 1024 * 1024 });
  try {
    for (;;) {
      const batch = await iterator.nextv(256);
      if (batch.length === 0) break;
      for (const [key, raw] of batch) {
        const keyLsn = key.readBigUInt64BE(ENTITY_KEY_LENGTH);
        if (keyLsn > lsn) continue;
        const block = key.readUInt32BE(14);
        let versions = out.get(block);
        if (!versions) out.set(block, (versions = { lsns: [], base: -1, records: 0, crossing: false }));
        if (raw[0] === ValueKind.Run) {
          // a run is one ingest step's, and a cut LSN ends a step: never across it (left alone if so)
          if (runNewestLsn(raw) > lsn) versions.crossing = true;
          versions.records += runLength(raw);
        } else if (isBaseValue(raw)) {
          versions.base = versions.lsns.length;
          // a base that is replayed itself (a will-init record, a page copied from another
          // database) counts as a record: a bulk load's page is one multi-insert record, and
          // without an image every full backup replayed it again (twice as slow as reading images)
          versions.records = isStoredPage(raw) ? 0 : 1;
        } else versions.records++;
        versions.lsns.push(keyLsn);
      }
    }
  } finally {
    await iterator.close();
  }
  return out;
}

/**
 * The blocks a cut at `lsn` may change, found without ingest's record of written blocks (it is
 * kept in memory only, so after a restart), by relation fork: those with more than one version in
 * 0x10 at or below `lsn`, and those whose one version there is replayed rather than the page
 * itself (a record on an imported page, a run, a will-init record: a bulk load's page), which a
 * cut gives an image. A keys-only scan saw only the first kind, so after a restart a bulk load's
 * pages kept their records for good and every full backup replayed them. The values cost little
 * more than the keys (classic-level's cost is per entry) and are dropped batch by batch.
 */
export async function blocksWithHistory(store: TimelineStore, lsn: Lsn): Promise<PagesOfFork[]> {
  const out: PagesOfFork[] = [];
  const iterator = store.db.iterator({ gte: Buffer.from([KeySpace.RelBlock]), lt: Buffer.from([KeySpace.RelBlock + 1]), highWaterMarkBytes: 1024 * 1024 });
  let entity = "";
  let count = 0;
  /** the block's one version at or below `lsn` so far is replayed (not an image or a tombstone) */
  let replayed = false;
  let current: PagesOfFork | undefined;
  const close = (key: Buffer | undefined) => {
    if ((count > 1 || (count === 1 && replayed)) && key) {
      const rel = { spcNode: key.readUInt32BE(1), dbNode: key.readUInt32BE(5), relNode: key.readUInt32BE(9) };
      const fork = key[13];
      if (!current || current.fork !== fork || current.rel.relNode !== rel.relNode || current.rel.dbNode !== rel.dbNode || current.rel.spcNode !== rel.spcNode) out.push((current = { rel, fork, blocks: [] }));
      current.blocks.push(key.readUInt32BE(14));
    }
  };
  let last: Buffer | undefined;
  try {
    for (;;) {
      const entries = await iterator.nextv(1000);
      if (entries.length === 0) break;
      for (const [key, raw] of entries) {
        const id = key.toString("latin1", 0, ENTITY_KEY_LENGTH);
        if (id !== entity) {
          close(last);
          entity = id;
          count = 0;
        }
        last = key;
        if (key.readBigUInt64BE(ENTITY_KEY_LENGTH) <= lsn && ++count === 1) replayed = !isStoredPage(raw);
      }
    }
    close(last);
  } finally {
    await iterator.close();
  }
  return out;
}

/**
 * Cuts the history of the listed blocks at `lsn` (a record boundary the timeline has durably
 * ingested, e.g. its last_record_lsn). Blocks may be listed in any order and more than once.
 */
export async function cutHistory(reader: PageReader, pages: ReadonlyArray<PagesOfFork>, lsn: Lsn, options: HistoryCutOptions = {}): Promise<HistoryCutResult> {
  const result: HistoryCutResult = { images: 0, trimmed: 0, moved: 0, unchanged: 0, failed: 0, stopped: false };
  // (a fork listed more than once is cut once, with its blocks together)
  const byFork = new Map<string, PagesOfFork>();
  for (const p of pages) {
    if (p.blocks.length === 0) continue;
    const id = `${p.rel.spcNode}/${p.rel.dbNode}/${p.rel.relNode}/${p.fork}`;
    const seen = byFork.get(id);
    // (a loop: a spread of a large relation's blocks overflows the call stack)
    if (seen) for (const block of p.blocks) seen.blocks.push(block);
    else byFork.set(id, { rel: p.rel, fork: p.fork, blocks: [...p.blocks] });
  }
  const forks = [...byFork.values()].sort(compareForks);
  if (forks.length === 0) return result;
  const minRecords = Math.max(1, options.minRecords ?? 1);
  const groupBlocks = options.groupBlocks ?? DEFAULT_GROUP_BLOCKS;
  const sizes = await reader.relationSizes(forks, lsn);
  const lastFork = forks[forks.length - 1];
  const end = { rel: lastFork.rel, fork: lastFork.fork, block: lastFork.blocks.reduce((a, b) => (b > a ? b : a), 0) + 1 };
  let scanner: RelationScanner | undefined;
  // (background work: most blocks' pages come back without waiting for I/O, and a group's worth of
  // replay in one go held the event loop for tens of milliseconds, which GetPage waited out)
  const turn = turnsEvery(BACKGROUND_SLICE_MS);
  try {
    for (let f = 0; f < forks.length; f++) {
      const forkPages = forks[f];
      const size = sizes[f] ?? 0;
      const blocks = [...new Set(forkPages.blocks)].sort((a, b) => a - b);
      for (let g = 0; g < blocks.length; g += groupBlocks) {
        const wait = options.pause?.();
        if (wait) {
          await scanner?.close();
          scanner = undefined;
          if (!(await wait)) {
            result.stopped = true;
            return result;
          }
        }
        const group = blocks.slice(g, g + groupBlocks).filter((block) => {
          if (block < size) return true;
          result.unchanged++;
          return false;
        });
        if (group.length === 0) continue;
        const planned = await planBlocks(reader, forkPages, group[0], group[group.length - 1], lsn);
        const moves: Array<{ entity: Buffer; lsns: Lsn[] }> = [];
        const images: Array<{ key: Buffer; value: Buffer }> = [];
        const rebuilt: Array<{ entity: Buffer; lsns: Lsn[]; page: Buffer | Promise<Buffer> }> = [];
        for (const block of group) {
          await turn();
          const versions = planned.get(block);
          if (!versions || versions.crossing || (versions.records < minRecords && versions.base <= 0)) {
            result.unchanged++;
            continue;
          }
          const entity = relBlockKey(forkPages.rel, forkPages.fork, block);
          if (versions.records >= minRecords) {
            scanner ??= new RelationScanner(reader, lsn, { end, background: true, parallelReplay: options.parallelReplay });
            let page: Buffer | Promise<Buffer>;
            try {
              // (a chain on a redo worker comes back as a promise: the next blocks are read meanwhile)
              page = settledPage(await scanner.pageOrImage(forkPages.rel, forkPages.fork as ForkNumber, block));
            } catch {
              result.failed++;
              continue;
            }
            rebuilt.push({ entity, lsns: versions.lsns, page });
          } else {
            moves.push({ entity, lsns: versions.lsns.slice(0, versions.base) });
            result.trimmed++;
          }
        }
        // every page of the group back (or failed) before anything is written or the scan closes
        const pages = await Promise.allSettled(rebuilt.map((r) => r.page));
        for (let i = 0; i < rebuilt.length; i++) {
          const settled = pages[i];
          if (settled.status === "rejected") {
            result.failed++;
            continue;
          }
          moves.push({ entity: rebuilt[i].entity, lsns: rebuilt[i].lsns });
          images.push({ key: storeKey(rebuilt[i].entity, lsn), value: imageValue(settled.value) });
          result.images++;
        }
        result.moved += await reader.store.cutHistory(moves, images, options.copyBatchBytes);
        failpoint("compaction-after-batch");
      }
    }
    return result;
  } finally {
    await scanner?.close();
  }
}
