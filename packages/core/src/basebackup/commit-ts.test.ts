import { describe, expect, it } from "vitest";
import { CHECKPOINT_SIZE, CheckPointField } from "../ingest/records.ts";
import { planCommitTs } from "./commit-ts.ts";

const PER_SEGMENT = 819 * 32;

function checkpoint(nextXid: number, oldest: number): Buffer {
  const cp = Buffer.alloc(CHECKPOINT_SIZE);
  cp.writeUInt32LE(nextXid, CheckPointField.nextXid);
  cp.writeUInt32LE(oldest, CheckPointField.oldestCommitTsXid);
  cp.writeUInt32LE(oldest, CheckPointField.newestCommitTsXid);
  return cp;
}

describe("pg_commit_ts in a full backup", () => {
  it("writes nothing and keeps the bounds invalid when the source does not track commit timestamps", () => {
    expect(planCommitTs(checkpoint(5000, 0), [{ segno: 0, pages: 3 }])).toEqual({ segments: [] });
  });

  it("keeps the source's oldest, ends at nextXid - 1, and gives every page up to it a file page", () => {
    // commits reached page 2; nextXid (rounded up by ingest) lies on page 3
    const plan = planCommitTs(checkpoint(3000, 700), [{ segno: 0, pages: 3 }]);
    expect(plan).toEqual({ bounds: { oldest: 700, newest: 2999 }, segments: [{ segno: 0, pages: 4 }] });
  });

  it("fills the segments between the stored ones and the newest xid's", () => {
    const plan = planCommitTs(checkpoint(2 * PER_SEGMENT + 10, 100), [{ segno: 0, pages: 20 }]);
    expect(plan.segments).toEqual([
      { segno: 0, pages: 32 },
      { segno: 1, pages: 32 },
      { segno: 2, pages: 1 },
    ]);
  });

  it("moves oldest up to the first stored segment when the older ones were never kept", () => {
    const plan = planCommitTs(checkpoint(3 * PER_SEGMENT + 5, 100), [{ segno: 2, pages: 32 }, { segno: 3, pages: 1 }]);
    expect(plan.bounds).toEqual({ oldest: 2 * PER_SEGMENT, newest: 3 * PER_SEGMENT + 4 });
    expect(plan.segments).toEqual([
      { segno: 2, pages: 32 },
      { segno: 3, pages: 1 },
    ]);
  });

  it("leaves the bounds invalid when the timeline kept no commit timestamps at all (the compute starts afresh)", () => {
    expect(planCommitTs(checkpoint(5000, 700), [])).toEqual({ segments: [] });
  });

  it("has oldest = newest right after tracking started (nothing committed since)", () => {
    expect(planCommitTs(checkpoint(1640, 1640), [{ segno: 0, pages: 3 }]).bounds).toEqual({ oldest: 1640, newest: 1640 });
  });

  it("runs across xid wraparound: segments from oldest's to the last one, then from 0", () => {
    const lastSegment = Math.floor(0xffffffff / PER_SEGMENT);
    const oldest = lastSegment * PER_SEGMENT + 10;
    const plan = planCommitTs(checkpoint(100, oldest), [{ segno: lastSegment, pages: 5 }, { segno: 0, pages: 1 }]);
    expect(plan.bounds).toEqual({ oldest, newest: 99 });
    expect(plan.segments).toEqual([
      { segno: 0, pages: 1 },
      { segno: lastSegment, pages: 32 },
    ]);
  });
});
