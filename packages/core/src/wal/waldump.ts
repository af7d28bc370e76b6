// pg_waldump compatibility: print decoded records the way `pg_waldump` does, and parse real
// pg_waldump output, both into one normalized form so tests (and operators) can diff our decoder
// against PostgreSQL's record by record. The rmgr-specific desc text is not reproduced.
import { formatLsn, parseLsn } from "../lsn.ts";
import { BLCKSZ, FORK_NAMES, formatRelTag } from "../reltag.ts";
import { fpiLength, type DecodedRecord } from "./record.ts";
import { recordTypeName, rmgrName } from "./rmgrs.ts";

export interface WaldumpImage {
  apply: boolean;
  /** the fields below are only printed by `pg_waldump -b` */
  holeOffset?: number;
  holeLength?: number;
  /** BLCKSZ - hole_length - stored length; only for compressed images */
  compressionSaved?: number;
  method?: "pglz" | "lz4" | "zstd";
}

export interface WaldumpBlock {
  id: number;
  rel: string; // "spc/db/rel"
  fork: string; // "main" | "fsm" | "vm" | "init"
  blk: number;
  image?: WaldumpImage;
}

/** Everything pg_waldump shows about a record, except the rmgr-specific desc text. */
export interface WaldumpEntry {
  lsn: string; // X/Y as formatLsn prints it
  rmgr: string;
  recLen: number; // tot_len minus stored image bytes
  totLen: number;
  xid: number;
  prev: string;
  type: string; // identify() name, e.g. "INSERT+INIT"
  blocks: WaldumpBlock[];
}

/** The normalized form of one of our decoded records. `detailed` = include what `-b` shows. */
export function toWaldumpEntry(record: DecodedRecord, detailed = true): WaldumpEntry {
  return {
    lsn: formatLsn(record.lsn),
    rmgr: rmgrName(record.rmid),
    recLen: record.totalLength - fpiLength(record),
    totLen: record.totalLength,
    xid: record.xid,
    prev: formatLsn(record.prev),
    type: recordTypeName(record.rmid, record.info),
    blocks: record.blocks.map((b) => {
      const block: WaldumpBlock = { id: b.id, rel: formatRelTag(b.rel), fork: FORK_NAMES[b.forkNum] ?? String(b.forkNum), blk: b.blockNumber };
      if (b.image) {
        const image: WaldumpImage = { apply: b.applyImage };
        if (detailed) {
          image.holeOffset = b.image.holeOffset;
          image.holeLength = b.image.holeLength;
          if (b.image.compression !== "none") {
            image.compressionSaved = BLCKSZ - b.image.holeLength - b.image.length;
            image.method = b.image.compression;
          }
        }
        block.image = image;
      }
      return block;
    }),
  };
}

const pad = (s: string | number, n: number) => String(s).padStart(n);
const lsn08 = (text: string) => {
  const [hi, lo] = text.split("/");
  return `${hi}/${lo.padStart(8, "0")}`;
};

/**
 * One pg_waldump-style line for a record (the non `-b` layout); desc is only the record type.
 * e.g. `rmgr: Heap        len (rec/tot):     54/    54, tx:        735, lsn: 0/01512E40, prev 0/01512E08, desc: INSERT, blkref #0: rel 1663/5/16384 blk 0`
 */
export function formatRecordLine(record: DecodedRecord): string {
  const e = toWaldumpEntry(record, false);
  let line = `rmgr: ${e.rmgr.padEnd(11)} len (rec/tot): ${pad(e.recLen, 6)}/${pad(e.totLen, 6)}, tx: ${pad(e.xid, 10)}, lsn: ${lsn08(e.lsn)}, prev ${lsn08(e.prev)}, desc: ${e.type}`;
  for (const b of e.blocks) {
    line += `, blkref #${b.id}: rel ${b.rel}${b.fork === "main" ? "" : ` fork ${b.fork}`} blk ${b.blk}`;
    if (b.image) line += b.image.apply ? " FPW" : " FPW for WAL verification";
  }
  return line;
}

const HEAD = /^rmgr: (\S+)\s+len \(rec\/tot\):\s*(\d+)\/\s*(\d+), tx:\s*(\d+), lsn: ([0-9A-F]+\/[0-9A-F]+), prev ([0-9A-F]+\/[0-9A-F]+), desc: (.*)$/;
const INLINE_BLOCK = /, blkref #(\d+): rel (\d+\/\d+\/\d+)(?: fork (\w+))? blk (\d+)( FPW(?: for WAL verification)?)?/g;
const DETAIL_BLOCK =
  /^\tblkref #(\d+): rel (\d+\/\d+\/\d+) fork (\w+) blk (\d+)(?: \(FPW( for WAL verification)?\); hole: offset: (\d+), length: (\d+)(?:, compression saved: (\d+), method: (\w+))?)?$/;

function typeFromDesc(desc: string): string {
  if (desc.startsWith("UNKNOWN (")) return desc.slice(0, desc.indexOf(")") + 1);
  const sp = desc.search(/[ ,]/);
  return sp < 0 ? desc : desc.slice(0, sp);
}

/**
 * Parses one record line of plain `pg_waldump` output (block refs inline at the end).
 * Returns undefined for lines that are not record lines.
 */
export function parsePgWaldumpLine(line: string): WaldumpEntry | undefined {
  const m = HEAD.exec(line);
  if (!m) return undefined;
  const [, rmgr, recLen, totLen, xid, lsn, prev, desc] = m;
  const blocks: WaldumpBlock[] = [];
  for (const b of desc.matchAll(INLINE_BLOCK)) {
    const block: WaldumpBlock = { id: Number(b[1]), rel: b[2], fork: b[3] ?? "main", blk: Number(b[4]) };
    if (b[5]) block.image = { apply: !b[5].includes("verification") };
    blocks.push(block);
  }
  return {
    lsn: formatLsn(parseLsn(lsn)),
    rmgr,
    recLen: Number(recLen),
    totLen: Number(totLen),
    xid: Number(xid),
    prev: formatLsn(parseLsn(prev)),
    type: typeFromDesc(desc),
    blocks,
  };
}

/**
 * Parses full pg_waldump output, plain or `-b` (`--bkp-details`: one tab-indented blkref line
 * per block with image hole/compression details). Other lines (errors, stats) are ignored.
 */
export function parsePgWaldumpOutput(output: string): WaldumpEntry[] {
  const entries: WaldumpEntry[] = [];
  for (const line of output.split("\n")) {
    if (line.startsWith("rmgr: ")) {
      const entry = parsePgWaldumpLine(line);
      if (entry) entries.push(entry);
      continue;
    }
    const m = DETAIL_BLOCK.exec(line);
    if (!m || entries.length === 0) continue;
    const block: WaldumpBlock = { id: Number(m[1]), rel: m[2], fork: m[3], blk: Number(m[4]) };
    if (m[6] !== undefined) {
      const image: WaldumpImage = { apply: m[5] === undefined, holeOffset: Number(m[6]), holeLength: Number(m[7]) };
      if (m[8] !== undefined) {
        image.compressionSaved = Number(m[8]);
        image.method = m[9] as WaldumpImage["method"];
      }
      block.image = image;
    }
    entries[entries.length - 1].blocks.push(block);
  }
  return entries;
}

/** Human-readable differences between two entry lists (empty = identical). */
export function diffWaldumpEntries(ours: WaldumpEntry[], theirs: WaldumpEntry[], limit = 20): string[] {
  const diffs: string[] = [];
  const n = Math.max(ours.length, theirs.length);
  for (let i = 0; i < n && diffs.length < limit; i++) {
    const a = JSON.stringify(ours[i]);
    const b = JSON.stringify(theirs[i]);
    if (a !== b) diffs.push(`#${i}:\n  ours:       ${a}\n  pg_waldump: ${b}`);
  }
  if (ours.length !== theirs.length) diffs.push(`record count: ours ${ours.length}, pg_waldump ${theirs.length}`);
  return diffs;
}
