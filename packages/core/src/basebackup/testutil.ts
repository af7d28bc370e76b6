// A fake PageReader for full backup tests: a small cluster whose pages say which fork and block
// they are (heap 16384 with fsm/vm, an unlogged 16390, an empty shared catalog, 2PC state).
import { CHECKPOINT_SIZE, CheckPointField } from "../ingest/records.ts";
import type { Lsn } from "../lsn.ts";
import { ForkNumber, type RelTag } from "../reltag.ts";
import { SlruKind } from "../storage/keys.ts";
import type { PageReader } from "../timeline/page-reader.ts";
import { crc32c } from "../wal/crc32c.ts";
import { ControlField, PG_CONTROL_FILE_SIZE, PG_CONTROL_VERSION } from "./control.ts";

export const LSN = 0x4766820n;

function control(): Buffer {
  const c = Buffer.alloc(PG_CONTROL_FILE_SIZE);
  c.writeBigUInt64LE(42n, ControlField.systemIdentifier);
  c.writeUInt32LE(PG_CONTROL_VERSION, ControlField.pgControlVersion);
  c.writeUInt32LE(202209061, ControlField.catalogVersionNo);
  c.writeInt32LE(1, ControlField.walLevel);
  c.writeInt32LE(7, ControlField.maxPreparedXacts);
  c.writeUInt32LE(8192, ControlField.blcksz);
  c.writeUInt32LE(2, ControlField.relsegSize); // tiny 1 GB segments: 2 blocks
  c.writeUInt32LE(8192, ControlField.xlogBlcksz);
  c.writeUInt32LE(16 * 1024 * 1024, ControlField.xlogSegSize);
  c.writeUInt32LE(1, ControlField.dataChecksumVersion);
  c.writeUInt32LE(crc32c(c, 0, ControlField.crc), ControlField.crc);
  return c;
}

function checkpoint(nextXid: number): Buffer {
  const cp = Buffer.alloc(CHECKPOINT_SIZE);
  cp.writeUInt32LE(1, CheckPointField.thisTimeLineID);
  cp.writeBigUInt64LE(BigInt(nextXid), CheckPointField.nextXid);
  cp.writeUInt32LE(1, CheckPointField.nextMulti);
  return cp;
}

/** A page whose content says which fork and block it is. */
export function page(fork: ForkNumber, block: number): Buffer {
  const p = Buffer.alloc(8192);
  p.writeUInt16LE(24, 12);
  p.writeUInt16LE(8192, 14);
  p.writeUInt16LE(8192, 16);
  p[100] = fork;
  p[101] = block;
  return p;
}

export const heap: RelTag = { spcNode: 1663, dbNode: 5, relNode: 16384 };
export const unlogged: RelTag = { spcNode: 1663, dbNode: 5, relNode: 16390 };
export const shared: RelTag = { spcNode: 1664, dbNode: 0, relNode: 1262 };

export function fakeReader(overrides: Partial<Record<keyof PageReader, unknown>> = {}): PageReader {
  const sizes = new Map<string, number>([
    ["16384/0", 5],
    ["16384/1", 3],
    ["16384/2", 1],
    ["16390/0", 4], // stale: an unlogged main fork is rebuilt from the init fork
    ["16390/3", 1],
    ["1262/0", 0],
  ]);
  const reader = {
    getControlFile: async () => control(),
    getCheckpoint: async () => checkpoint(40000), // page 1 of pg_xact segment 0, not stored
    recordBefore: async (lsn: Lsn) => ({ start: lsn - 0x60n, end: lsn }),
    listSlruSegments: async (kind: SlruKind) => (kind === SlruKind.Clog ? [{ segno: 0, pages: 1 }] : kind === SlruKind.MultiXactOffsets ? [{ segno: 0, pages: 1 }] : []),
    getSlruPage: async () => Buffer.alloc(8192, 0x55),
    listRelations: async () => [
      { rel: heap, fork: ForkNumber.Main },
      { rel: heap, fork: ForkNumber.Fsm },
      { rel: heap, fork: ForkNumber.VisibilityMap },
      { rel: unlogged, fork: ForkNumber.Main },
      { rel: unlogged, fork: ForkNumber.Init },
      { rel: shared, fork: ForkNumber.Main },
    ],
    relSize: async (rel: RelTag, fork: ForkNumber) => sizes.get(`${rel.relNode}/${fork}`),
    // as PageReader's: relSize of each (an override of relSize applies here too)
    relationSizes(forks: Array<{ rel: RelTag; fork: ForkNumber }>, lsn: Lsn) {
      return Promise.all(forks.map(({ rel, fork }) => (this as unknown as PageReader).relSize(rel, fork, lsn)));
    },
    listDatabases: async () => [{ spcNode: 1664, dbNode: 0 }, { spcNode: 1663, dbNode: 1 }, { spcNode: 1663, dbNode: 5 }],
    getRelmap: async (spc: number, db: number) => (db === 1 ? undefined : Buffer.alloc(512, spc === 1664 ? 0x11 : 0x22)),
    listTwoPhase: async () => [{ xid: 0x2a1, state: Buffer.from("state bytes") }],
    listTimelineHistories: async () => [{ timeline: 2, content: Buffer.from("1\t0/3000158\tno recovery target specified\n") }],
    listReplicationOrigins: async () => [{ id: 1, remoteLsn: 0x5a5a5an }, { id: 3, remoteLsn: 0x1_0000_0000n }],
    listTablespaces: async () => [],
    getPage: async (_rel: RelTag, fork: ForkNumber, block: number) => page(fork, block),
    ...overrides,
  };
  return reader as unknown as PageReader;
}
