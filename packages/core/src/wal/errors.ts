// The one error type of the WAL decoder. Every message names the LSN (X/Y) where decoding failed,
// so a corrupt or unexpected byte in a multi-gigabyte stream can be found with pg_waldump.
import { formatLsn, type Lsn } from "../lsn.ts";

export type WalDecodeErrorCode =
  | "BAD_CRC" // record CRC-32C mismatch
  | "BAD_RECORD" // malformed record header, block header or payload lengths
  | "BAD_PAGE_HEADER" // magic, flags, long header, TLI, contrecord length
  | "BAD_PAGE_ADDRESS" // xlp_pageaddr is not the page's own position (e.g. a recycled segment)
  | "ZERO_LENGTH" // xl_tot_len = 0: the end of written WAL in a segment file
  | "BAD_IMAGE"; // full-page image that cannot be decompressed/restored

export class WalDecodeError extends Error {
  override readonly name = "WalDecodeError";
  constructor(
    readonly code: WalDecodeErrorCode,
    readonly lsn: Lsn,
    detail: string,
  ) {
    super(`${detail} at ${formatLsn(lsn)}`);
  }
}
