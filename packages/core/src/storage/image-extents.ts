// Image extents: an import stores each relation fork's pages as extents of consecutive blocks,
// one LevelDB entry per extent (KeySpace.ImageExtent, keyed by the first block and the import
// LSN) whose page images lie one after another in the page image files. A block's imported page
// is then found by arithmetic instead of an entry of its own: a 1 GB relation is 128 entries
// instead of 131,072, which every forward scan (a full backup) would otherwise copy into
// JavaScript one by one. An extent's page is exactly what an Image of that block at the extent's
// LSN would be: the base of the block's chain when the block has no newer base (docs/key-layout.md).
// The index of a timeline's extents is small (one entry per extent) and is held in memory.
import type { Lsn } from "../lsn.ts";
import { BLCKSZ, type ForkNumber, type RelTag } from "../reltag.ts";
import type { FileRef } from "./append-files.ts";
import { ENTITY_KEY_LENGTH } from "./keys.ts";
import { readImageExtent } from "./values.ts";

/** Blocks per extent an import writes (1 MiB of pages): relation segments (131,072 blocks) hold whole extents. */
export const EXTENT_BLOCKS = 128;

export interface ImageExtent {
  firstBlock: number;
  blocks: number;
  lsn: Lsn;
  /** where the first block's page is; block b's is BLCKSZ * (b - firstBlock) further */
  file: number;
  offset: number;
}

const forkId = (spcNode: number, dbNode: number, relNode: number, fork: number) => `${spcNode}/${dbNode}/${relNode}/${fork}`;

/** A timeline's image extents by relation fork, each fork's sorted by first block (then LSN). */
export class ImageExtentIndex {
  private readonly forks = new Map<string, { extents: ImageExtent[]; longest: number }>();

  /** From the raw entries of the ImageExtent key space (store key, value). */
  constructor(entries: Iterable<[Buffer, Buffer]> = []) {
    for (const [key, value] of entries) {
      if (key.length !== ENTITY_KEY_LENGTH + 8) throw new Error(`corrupt image extent key of ${key.length} bytes`);
      const ref = readImageExtent(value);
      const id = forkId(key.readUInt32BE(1), key.readUInt32BE(5), key.readUInt32BE(9), key[13]);
      let fork = this.forks.get(id);
      if (!fork) this.forks.set(id, (fork = { extents: [], longest: 0 }));
      const blocks = ref.length / BLCKSZ;
      fork.extents.push({ firstBlock: key.readUInt32BE(14), blocks, lsn: key.readBigUInt64BE(ENTITY_KEY_LENGTH), file: ref.file, offset: ref.offset });
      fork.longest = Math.max(fork.longest, blocks);
      this.size++;
    }
    // store order is already (first block, LSN) within a fork; sorted anyway for other sources
    for (const fork of this.forks.values()) {
      fork.extents.sort((a, b) => a.firstBlock - b.firstBlock || (a.lsn < b.lsn ? -1 : a.lsn > b.lsn ? 1 : 0));
      for (let i = 1; i < fork.extents.length; i++) {
        if (fork.extents[i].firstBlock < fork.extents[i - 1].firstBlock + fork.extents[i - 1].blocks) this.overlapping = true;
      }
    }
  }

  /**
   * Whether some extents cover the same block (imports at several LSNs; one import never does):
   * only then can a block's extent differ from its neighbour's in the same range.
   */
  overlapping = false;

  /** extents in the index (counted once: relation scans ask for each block outside the last extent) */
  readonly size: number = 0;

  /** The extent holding `block` of a relation fork with the newest LSN at or below `lsn`. */
  find(rel: RelTag, fork: ForkNumber, block: number, lsn: Lsn): ImageExtent | undefined {
    if (this.forks.size === 0) return undefined;
    const entry = this.forks.get(forkId(rel.spcNode, rel.dbNode, rel.relNode, fork));
    if (!entry) return undefined;
    const list = entry.extents;
    // the last extent starting at or before the block
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid].firstBlock <= block) lo = mid + 1;
      else hi = mid;
    }
    // extents of one import never overlap, so this is usually the first one looked at; extents
    // of imports at several LSNs may, and the newest visible one wins
    let found: ImageExtent | undefined;
    for (let i = lo - 1; i >= 0 && list[i].firstBlock + entry.longest > block; i--) {
      const extent = list[i];
      if (block < extent.firstBlock + extent.blocks && extent.lsn <= lsn && (!found || extent.lsn > found.lsn)) found = extent;
    }
    return found;
  }

  /** The page of `block` in `extent` (from `find`), as a reference into the page image files. */
  static pageRef(extent: ImageExtent, block: number): FileRef {
    return { file: extent.file, offset: ImageExtentIndex.pageOffset(extent, block), length: BLCKSZ };
  }

  /** Where in its file the page of `block` in `extent` starts. */
  static pageOffset(extent: ImageExtent, block: number): number {
    return extent.offset + (block - extent.firstBlock) * BLCKSZ;
  }
}
