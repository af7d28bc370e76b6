// pg_commit_ts in a full backup: which segments to write, and the commit timestamp bounds
// (oldestCommitTsXid, newestCommitTsXid) its checkpoint carries. Pure: the tracked checkpoint and
// the segments the timeline holds in, a plan out.
import { CheckPointField, COMMIT_TS_XACTS_PER_PAGE, SLRU_PAGES_PER_SEGMENT } from "../ingest/records.ts";

const XACTS_PER_SEGMENT = COMMIT_TS_XACTS_PER_PAGE * SLRU_PAGES_PER_SEGMENT;
/** Segment numbers wrap with xids: the last one holds xid 0xFFFFFFFF. */
const SEGMENTS = Math.floor(0xffffffff / XACTS_PER_SEGMENT) + 1;
const FIRST_NORMAL_XID = 3;

export interface CommitTsPlan {
  /** bounds for the checkpoint; undefined: the timeline holds no commit timestamps (the compute starts afresh at nextXid) */
  bounds?: { oldest: number; newest: number };
  /** segments to write (number, pages), ascending */
  segments: Array<{ segno: number; pages: number }>;
}

/**
 * `stored`: the timeline's pg_commit_ts segments (number, pages) at the backup LSN.
 *
 * - Not tracked (oldestCommitTsXid invalid): no segments, invalid bounds, as PostgreSQL leaves a
 *   cluster with track_commit_timestamp off.
 * - oldest: the tracked one, unless the timeline lacks its segment (it kept no timestamps before
 *   some point, e.g. a store written before Strata kept them): then the start of the first segment
 *   it holds after it, so no read of an older xid reaches a missing file (those read as null).
 * - newest: nextXid - 1. Ingest does not track the newest commit exactly; xids between the last
 *   commit and it have zero entries, which PostgreSQL reports as null, as for aborted ones.
 * - Every page from oldest's to newest's exists (zero pages where nothing was stored): a page that
 *   was never written is one no commit reached, and PostgreSQL fails on a missing page in range.
 */
export function planCommitTs(tracked: Buffer, stored: ReadonlyArray<{ segno: number; pages: number }>): CommitTsPlan {
  let oldest = tracked.readUInt32LE(CheckPointField.oldestCommitTsXid);
  if (oldest === 0) return { segments: [] };
  const nextXid = tracked.readUInt32LE(CheckPointField.nextXid);
  let newest = (nextXid - 1) >>> 0;
  if (newest < FIRST_NORMAL_XID) newest = 0xffffffff; // nextXid just wrapped past the special xids
  // xids compare modulo 2^32: at activation nothing has committed yet (oldest = newest = nextXid)
  if (((newest - oldest) | 0) < 0) newest = oldest;

  if (stored.length === 0) return { segments: [] };
  const pages = new Map(stored.map((s) => [s.segno, s.pages]));
  const segmentOf = (xid: number) => Math.floor(xid / XACTS_PER_SEGMENT);
  const newestSegment = segmentOf(newest);
  let first = segmentOf(oldest);
  while (!pages.has(first) && first !== newestSegment) first = (first + 1) % SEGMENTS;
  if (first !== segmentOf(oldest)) oldest = Math.max(FIRST_NORMAL_XID, first * XACTS_PER_SEGMENT);

  for (let segno = first; ; segno = (segno + 1) % SEGMENTS) {
    const needed = segno === newestSegment ? (Math.floor(newest / COMMIT_TS_XACTS_PER_PAGE) % SLRU_PAGES_PER_SEGMENT) + 1 : SLRU_PAGES_PER_SEGMENT;
    pages.set(segno, Math.max(pages.get(segno) ?? 0, needed));
    if (segno === newestSegment) break;
  }
  return {
    bounds: { oldest, newest },
    segments: [...pages].sort((a, b) => a[0] - b[0]).map(([segno, n]) => ({ segno, pages: n })),
  };
}
