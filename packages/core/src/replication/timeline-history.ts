// A server's timeline history (TIMELINE_HISTORY, the %08X.history file): which timeline each part of
// its WAL belongs to. A promoted standby writes on a new timeline from its switch point on; the WAL
// before it stays on the old timeline, under that timeline's segment file names, and a walsender
// serves it only when asked for that timeline.
import { formatLsn, parseLsn, type Lsn } from "../lsn.ts";

export interface TimelineHistoryEntry {
  /** a timeline the server's history passed through */
  timeline: number;
  /** where the server's history left it: its WAL is valid below this LSN */
  switchLsn: Lsn;
}

export class TimelineHistoryError extends Error {}

/** Parses `parentTLI<TAB>switchLSN<TAB>reason` lines (blank lines and # comments skipped), oldest first. */
export function parseTimelineHistory(content: string): TimelineHistoryEntry[] {
  return historyLines(content).map((line) => line.entry);
}

/** The entries of a history file, each with the offset just past its line. */
function historyLines(content: string): Array<{ entry: TimelineHistoryEntry; end: number }> {
  const lines: Array<{ entry: TimelineHistoryEntry; end: number }> = [];
  let end = 0;
  for (const raw of content.split("\n")) {
    end = Math.min(end + raw.length + 1, content.length);
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (!m) throw new TimelineHistoryError(`malformed timeline history line "${line}"`);
    const entry = { timeline: Number(m[1]), switchLsn: parseLsn(m[2]) };
    const previous = lines[lines.length - 1]?.entry;
    if (previous && (entry.timeline <= previous.timeline || entry.switchLsn < previous.switchLsn)) {
      throw new TimelineHistoryError(`timeline history out of order at "${line}"`);
    }
    lines.push({ entry, end });
  }
  return lines;
}

/**
 * The timeline of a server on `currentTimeline` with this history whose WAL holds `lsn`: a
 * timeline's range ends at its switch point, where the next one begins.
 */
export function timelineOfLsn(history: readonly TimelineHistoryEntry[], currentTimeline: number, lsn: Lsn): number {
  for (const entry of history) if (lsn < entry.switchLsn) return entry.timeline;
  return currentTimeline;
}

/**
 * Checks that WAL we stored up to `resumeLsn`, last seen on `ourTimeline`, is part of the server's
 * history; throws when it is not: the server forked from our timeline before that point (it was
 * promoted without WAL we already have), or never was on our timeline.
 */
export function checkOnHistory(history: readonly TimelineHistoryEntry[], currentTimeline: number, ourTimeline: number, resumeLsn: Lsn): void {
  if (ourTimeline === currentTimeline) return;
  const entry = history.find((e) => e.timeline === ourTimeline);
  if (!entry) {
    throw new TimelineHistoryError(`the primary is on timeline ${currentTimeline}, whose history does not include timeline ${ourTimeline} that this timeline's WAL is on`);
  }
  if (resumeLsn > entry.switchLsn) {
    throw new TimelineHistoryError(
      `the primary's history left timeline ${ourTimeline} at ${formatLsn(entry.switchLsn)} (it is now on timeline ${currentTimeline}), ` +
        `but this timeline already holds WAL of timeline ${ourTimeline} up to ${formatLsn(resumeLsn)}: the primary was promoted without it, and the histories diverged`,
    );
  }
}

/** A timeline's history file, and where that timeline begins. */
export interface TimelineHistoryFile {
  timeline: number;
  /** the switch point its parent's WAL ends at */
  startLsn: Lsn;
  content: string;
}

/**
 * The history files of `timeline` and of every timeline its history passes through after the
 * first, from `timeline`'s own file. PostgreSQL writes a new timeline's file as its parent's file
 * plus a line for the switch, so each ancestor's file is a prefix of this one, ending with the
 * line of the switch that created that ancestor.
 */
export function historyFilesFrom(timeline: number, content: string): TimelineHistoryFile[] {
  const lines = historyLines(content);
  // the switch on line i created the timeline line i + 1 names (the last one: `timeline` itself)
  return lines.map(({ entry, end }, i) => ({ timeline: lines[i + 1]?.entry.timeline ?? timeline, startLsn: entry.switchLsn, content: content.slice(0, end) }));
}
