import { describe, expect, it } from "vitest";
import { parseLsn } from "../lsn.ts";
import { checkOnHistory, historyFilesFrom, parseTimelineHistory, TimelineHistoryError, timelineOfLsn } from "./timeline-history.ts";

// as PostgreSQL 15 writes 00000003.history after two promotions
const HISTORY = "1\t0/6DDB580\tno recovery target specified\n\n2\t0/9000060\tno recovery target specified\n";

describe("timeline history", () => {
  it("parses a history file, oldest timeline first", () => {
    expect(parseTimelineHistory(HISTORY)).toEqual([
      { timeline: 1, switchLsn: parseLsn("0/6DDB580") },
      { timeline: 2, switchLsn: parseLsn("0/9000060") },
    ]);
    expect(parseTimelineHistory("# comment\n")).toEqual([]);
    expect(() => parseTimelineHistory("1\tnonsense\n")).toThrow(TimelineHistoryError);
    expect(() => parseTimelineHistory("2\t0/9000060\tx\n1\t0/6DDB580\tx\n")).toThrow(/out of order/);
  });

  it("finds the timeline holding an LSN: a switch point belongs to the next timeline", () => {
    const history = parseTimelineHistory(HISTORY);
    expect(timelineOfLsn(history, 3, parseLsn("0/3000000"))).toBe(1);
    expect(timelineOfLsn(history, 3, parseLsn("0/6DDB57F"))).toBe(1);
    expect(timelineOfLsn(history, 3, parseLsn("0/6DDB580"))).toBe(2);
    expect(timelineOfLsn(history, 3, parseLsn("0/9000060"))).toBe(3);
    expect(timelineOfLsn([], 1, parseLsn("5/0"))).toBe(1);
  });

  it("accepts WAL at or before the point where the server left our timeline, and refuses WAL past it", () => {
    const history = parseTimelineHistory(HISTORY);
    expect(() => checkOnHistory(history, 3, 3, parseLsn("0/A000000"))).not.toThrow();
    expect(() => checkOnHistory(history, 3, 1, parseLsn("0/6DDB580"))).not.toThrow();
    expect(() => checkOnHistory(history, 3, 2, parseLsn("0/8000000"))).not.toThrow();
    expect(() => checkOnHistory(history, 3, 1, parseLsn("0/7000000"))).toThrow(/left timeline 1 at 0\/6DDB580 .*diverged/);
    expect(() => checkOnHistory(history, 3, 4, parseLsn("0/7000000"))).toThrow(/does not include timeline 4/);
  });
});

describe("historyFilesFrom", () => {
  it("gives each timeline of the history its own file as PostgreSQL wrote it, at the LSN where it begins", () => {
    // timeline 3's file as PostgreSQL writes it: timeline 2's file, a blank line, the new switch
    const two = "1\t0/3000158\tno recovery target specified\n";
    const three = `${two}\n2\t0/5000A08\tno recovery target specified\n`;
    expect(historyFilesFrom(3, three)).toEqual([
      { timeline: 2, startLsn: 0x3000158n, content: two },
      { timeline: 3, startLsn: 0x5000a08n, content: three },
    ]);
    expect(historyFilesFrom(2, two)).toEqual([{ timeline: 2, startLsn: 0x3000158n, content: two }]);
    // timelines need not be consecutive (a promotion of a standby on an older timeline)
    expect(historyFilesFrom(7, "1\t0/3000158\tx\n\n4\t0/6000000\ty").map((f) => [f.timeline, f.startLsn])).toEqual([
      [4, 0x3000158n],
      [7, 0x6000000n],
    ]);
  });
});
