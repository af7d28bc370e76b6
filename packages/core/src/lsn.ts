// LSNs are byte positions in the WAL stream, held as bigint and written `X/Y` (hex high/low 32 bits)
// everywhere a human or script sees them, as PostgreSQL does.
export type Lsn = bigint;

const LSN_PATTERN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const match = LSN_PATTERN.exec(text.trim());
  if (!match) throw new RangeError(`invalid LSN "${text}": expected X/Y with hex parts, e.g. 0/16B3748`);
  return (BigInt("0x" + match[1]) << 32n) | BigInt("0x" + match[2]);
}

export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > 0xffffffffffffffffn) throw new RangeError(`LSN out of range: ${lsn}`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function isValidLsnText(text: string): boolean {
  return LSN_PATTERN.test(text.trim());
}

export const INVALID_LSN: Lsn = 0n;

const WAL_PAGE_SIZE = 8192n;
const SHORT_PAGE_HEADER = 24n;
const LONG_PAGE_HEADER = 40n;

/**
 * `lsn`, or the start of its page when it points just past that page's header. PostgreSQL's
 * pg_current_wal_insert_lsn() points there when the last record ended at a page boundary, and the
 * header is written only with the next record: WAL is complete up to such an LSN once it is
 * complete up to the page start (no record ends inside a header). Waiting for the LSN itself
 * would wait for a record that may never come.
 */
export function pageStartIfPastHeader(lsn: Lsn, segmentSize = 16 * 1024 * 1024): Lsn {
  if (!mayBePastPageHeader(lsn)) return lsn;
  const inPage = lsn % WAL_PAGE_SIZE;
  if (inPage === SHORT_PAGE_HEADER) return lsn - inPage;
  if (inPage === LONG_PAGE_HEADER && lsn % BigInt(segmentSize) === LONG_PAGE_HEADER) return lsn - inPage;
  return lsn;
}

/** Whether `lsn` could point just past a page header, whatever the segment size. */
export function mayBePastPageHeader(lsn: Lsn): boolean {
  const inPage = lsn % WAL_PAGE_SIZE;
  return inPage === SHORT_PAGE_HEADER || inPage === LONG_PAGE_HEADER;
}
