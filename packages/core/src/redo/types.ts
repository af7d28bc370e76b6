// The contract every resource manager's redo module implements. Redo is per page: given one
// block reference of a record and that page as of just before the record, bring the page to its
// state just after the record. The engine (timeline/page-reader.ts) does what PostgreSQL's
// XLogReadBufferForRedo does around it: restores applicable full-page images, zero-fills
// will-init pages, skips records already on the page (page LSN >= record end), and stamps the
// record's end LSN on the page afterwards.
import type { BlockRef, DecodedRecord } from "../wal/record.ts";
import { recordTypeName, rmgrName } from "../wal/rmgrs.ts";
import { formatLsn } from "../lsn.ts";

/**
 * Applies `record` to `page` (8192 bytes, modified in place) for the block reference `block`.
 * For a will-init block the page arrives zero-filled and the routine initializes it.
 * Return "keep-lsn" when PostgreSQL does not stamp the page LSN for this change, and "hint-lsn"
 * when it stamps it only if hint bits are WAL-logged (data checksums or wal_log_hints).
 */
export type BlockRedo = (page: Buffer, record: DecodedRecord, block: BlockRef) => void | "keep-lsn" | "hint-lsn";

/**
 * PostgreSQL's rm_mask for wal_consistency_checking: blanks what may legitimately differ between
 * the primary's page and a replayed one (LSN, checksum, hint bits, unused space, …). In place.
 */
export type PageMask = (page: Buffer, blockNumber: number) => void;

export interface RmgrRedo {
  name: string;
  redo: BlockRedo;
  /**
   * Changes PostgreSQL's redo makes to a page even after restoring its full-page image (e.g.
   * GiST clears F_FOLLOW_RIGHT on the left child of a finished split). Optional.
   */
  afterImage?: (page: Buffer, record: DecodedRecord, block: BlockRef) => void;
  mask?: PageMask;
}

/** A record type Strata cannot replay: reading an affected page fails with this error. */
export class UnsupportedRecordError extends Error {
  constructor(readonly record: DecodedRecord, detail = "") {
    super(
      `no redo support for ${rmgrName(record.rmid)}/${recordTypeName(record.rmid, record.info)} (info 0x${(record.info & 0xf0).toString(16)}) at ${formatLsn(record.lsn)}` +
        (detail ? `: ${detail}` : ""),
    );
  }
}

/** A record that does not fit the page it is applied to (corruption or a redo bug). */
export class RedoError extends Error {
  constructor(record: DecodedRecord, block: BlockRef, message: string) {
    super(`redo of ${rmgrName(record.rmid)}/${recordTypeName(record.rmid, record.info)} at ${formatLsn(record.lsn)} on block ${block.blockNumber}: ${message}`);
  }
}
