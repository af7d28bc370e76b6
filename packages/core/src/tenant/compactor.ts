// When each timeline's history gets cut (timeline/history-cut.ts): once its WAL has gone quiet,
// the blocks written since the last pass are cut at the durable LSN, so a full backup or an
// endpoint started afterwards reads each block's newest image instead of its whole history, and
// replays nothing. Not while WAL streams in fast (that work is ingest's; long chains still get
// their images from the bounded-replay materializer), at most one pass per timeline at a time, and
// passes of a timeline at least `minIntervalMs` apart, so a block gets at most one image per pass
// however bursty the load. A pass pauses (its iterators closed) when WAL starts to stream in again
// and resumes once it is quiet. Which blocks were written is known from ingest, in memory only: the
// first pass after a timeline is attached (a restart) also takes every block with history.
// A primary that is never quiet would leave every version since the last pass in the way of each
// full backup (a forward scan reads them all): a timeline that keeps up with such a primary gets a
// pass anyway `maxWaitMs` after its last one (after the end of one under load), which pauses only
// while the timeline falls behind (a catch-up: its memory and CPU are ingest's) or a full backup
// scans it.
import type { Lsn } from "../lsn.ts";
import type { PagesOfFork } from "../ingest/walingest.ts";
import { blocksWithHistory, cutHistory, type HistoryCutResult } from "../timeline/history-cut.ts";
import type { PageReader } from "../timeline/page-reader.ts";

export interface CompactionSettings {
  /** records a block needs above its newest base to get an image at a cut (0 turns compaction off) */
  minRecords: number;
  /** a timeline whose WAL records arrive slower than this (bytes per second) is quiet */
  quietBytesPerSecond: number;
  /** least time between the starts of two passes of one timeline */
  minIntervalMs: number;
  /**
   * rebuild long chains on the redo workers (history-cut.ts `parallelReplay`). Off by default: on
   * a store right after a 1 GB TPC-B backlog the pass ended 44-49 s after the pageserver was
   * ready instead of 50-57 s, but the pageserver's peak RSS went up to 40 MB higher (VmHWM
   * 495-540 MB against 493-500 MB), most likely the workers' heaps.
   */
  parallelReplay?: boolean;
  /**
   * a timeline that keeps up with a primary that never goes quiet gets a pass anyway once this long
   * has passed since its last one (since the end of one under load; or since it was attached); 0:
   * passes only when quiet. Without such passes full backups under sustained load grew with every
   * minute of it (figures in docs/key-layout.md, "History cuts"); each costs an image of every
   * block written since the last.
   */
  maxWaitMs?: number;
}

export const DEFAULT_COMPACTION: CompactionSettings = { minRecords: 1, quietBytesPerSecond: 256 * 1024, minIntervalMs: 30_000, parallelReplay: false, maxWaitMs: 120_000 };

/** a receiver at most this far behind its primary keeps up with it (the lag the walreceiver aims to stay under) */
const FOLLOWING_BYTES = 16n * 1024n * 1024n;

/** STRATA_COMPACTION_MIN_RECORDS (0: off), STRATA_COMPACTION_QUIET_KBPS, STRATA_COMPACTION_INTERVAL_S, STRATA_COMPACTION_PARALLEL_REPLAY (0 or 1), STRATA_COMPACTION_MAX_WAIT_S (0: only when quiet) over the defaults. */
export function compactionFromEnv(env: NodeJS.ProcessEnv = process.env): CompactionSettings {
  const number = (name: string, fallback: number) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, not ${JSON.stringify(raw)}`);
    return value;
  };
  const flag = (name: string, fallback: boolean) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return fallback;
    if (raw === "1" || raw === "0") return raw === "1";
    throw new Error(`${name} must be 1 or 0, not ${JSON.stringify(raw)}`);
  };
  return {
    minRecords: Math.floor(number("STRATA_COMPACTION_MIN_RECORDS", DEFAULT_COMPACTION.minRecords)),
    quietBytesPerSecond: number("STRATA_COMPACTION_QUIET_KBPS", DEFAULT_COMPACTION.quietBytesPerSecond / 1024) * 1024,
    minIntervalMs: number("STRATA_COMPACTION_INTERVAL_S", DEFAULT_COMPACTION.minIntervalMs / 1000) * 1000,
    parallelReplay: flag("STRATA_COMPACTION_PARALLEL_REPLAY", DEFAULT_COMPACTION.parallelReplay ?? false),
    maxWaitMs: number("STRATA_COMPACTION_MAX_WAIT_S", (DEFAULT_COMPACTION.maxWaitMs ?? 0) / 1000) * 1000,
  };
}

/** What the compactor needs of a timeline. */
export interface CompactedTimeline {
  reader: PageReader;
  /** its walreceiver, if it follows a primary or an endpoint */
  receiver?: {
    readonly status: { state: string; recordBytes: number; primaryFlushLsn: Lsn };
    readonly lastRecordLsn: Lsn;
    drainWrittenPages(): PagesOfFork[];
  };
}

interface TimelineState {
  /** the receiver's recordBytes at the last tick, and when (WAL bytes received would count a segment switch's 16 MB of zeros) */
  recordBytes: number;
  at: number;
  quiet: boolean;
  /** streaming, and at most FOLLOWING_BYTES behind its primary */
  following: boolean;
  /** when the compactor first saw the timeline (a pass under load waits maxWaitMs from here too) */
  firstSeenAt: number;
  lastPassAt: number;
  /** a pass under load has ended since the last tick: the wait for the next runs from its end */
  loadPassEnded: boolean;
  run: Promise<void> | undefined;
  /** written blocks drained from a receiver that stopped while a pass ran, and the LSN to cut them at */
  pending: PagesOfFork[];
  pendingLsn: Lsn;
  /** a pass since attach has looked at every block (ingest's record of written blocks starts empty) */
  scanned: boolean;
}

const POLL_QUIET_MS = 250;

export class Compactor {
  private readonly states = new Map<string, TimelineState>();
  private readonly attached = new Map<string, CompactedTimeline>();

  constructor(
    readonly settings: CompactionSettings,
    /** `underLoad`: the pass ran because the timeline was never quiet for maxWaitMs */
    private readonly onPass: (key: string, result: HistoryCutResult, lsn: Lsn, underLoad: boolean) => void = () => {},
    private readonly onError: (key: string, err: Error) => void = () => {},
  ) {}

  private state(key: string): TimelineState {
    let state = this.states.get(key);
    if (!state) this.states.set(key, (state = { recordBytes: 0, at: 0, quiet: false, following: false, firstSeenAt: 0, lastPassAt: 0, loadPassEnded: false, run: undefined, pending: [], pendingLsn: 0n, scanned: false }));
    return state;
  }

  /**
   * Called about once a second per attached timeline: updates whether its WAL is quiet and starts
   * a pass when it is and one is due, or when it has kept up with a busy primary for maxWaitMs.
   */
  tick(key: string, timeline: CompactedTimeline, now = Date.now()): void {
    if (this.settings.minRecords <= 0) return;
    this.attached.set(key, timeline);
    const state = this.state(key);
    if (state.firstSeenAt === 0) state.firstSeenAt = now;
    // (a pass under load can take longer than maxWaitMs: counted from its start, the next one
    // would follow at once and the timeline would be compacted without a break)
    if (state.loadPassEnded) {
      state.loadPassEnded = false;
      state.lastPassAt = now;
    }
    const receiver = timeline.receiver;
    if (!receiver) {
      state.quiet = true;
      return;
    }
    const ingested = receiver.status.recordBytes;
    const seconds = (now - state.at) / 1000;
    const rate = state.at > 0 && seconds > 0 ? (ingested - state.recordBytes) / seconds : Infinity;
    state.recordBytes = ingested;
    state.at = now;
    const behind = receiver.status.primaryFlushLsn - receiver.lastRecordLsn;
    // (a receiver that is not streaming, e.g. waiting to reconnect, brings nothing in either)
    state.quiet = rate < this.settings.quietBytesPerSecond && (receiver.status.state !== "streaming" || behind < BigInt(Math.max(1, Math.floor(this.settings.quietBytesPerSecond))));
    state.following = receiver.status.state === "streaming" && behind <= FOLLOWING_BYTES;
    if (state.run) return;
    if (state.quiet) {
      if (now - state.lastPassAt >= this.settings.minIntervalMs) this.startPass(key, timeline, receiver.drainWrittenPages(), receiver.lastRecordLsn, now);
      return;
    }
    const maxWait = this.settings.maxWaitMs ?? 0;
    if (maxWait > 0 && state.following && now - Math.max(state.lastPassAt, state.firstSeenAt) >= maxWait) {
      this.startPass(key, timeline, receiver.drainWrittenPages(), receiver.lastRecordLsn, now, true);
    }
  }

  /** A walreceiver stopped (e.g. its endpoint shut down): its timeline is idle, cut it now. */
  receiverStopped(key: string, timeline: CompactedTimeline, receiver: NonNullable<CompactedTimeline["receiver"]>): void {
    if (this.settings.minRecords <= 0) return;
    this.attached.set(key, timeline);
    const state = this.state(key);
    state.quiet = true;
    // (its receiver is gone after this: what it saw written is kept here until a pass takes it)
    state.pending = state.pending.concat(receiver.drainWrittenPages());
    if (receiver.lastRecordLsn > state.pendingLsn) state.pendingLsn = receiver.lastRecordLsn;
    if (!state.run) this.startPass(key, timeline, [], state.pendingLsn, Date.now());
  }

  /** `underLoad`: a pass that need not wait for quiet (see pauseFor) */
  private startPass(key: string, timeline: CompactedTimeline, drained: PagesOfFork[], lsn: Lsn, now: number, underLoad = false): void {
    const state = this.state(key);
    const pages = [...state.pending, ...drained];
    state.pending = [];
    if (pages.length === 0 && state.scanned) return;
    state.lastPassAt = now;
    const run = (async () => {
      // the first pass since attach also takes every block with history (written before a restart)
      const scan = !state.scanned;
      const all = scan ? pages.concat(await blocksWithHistory(timeline.reader.store, lsn)) : pages;
      const result = await cutHistory(timeline.reader, all, lsn, { minRecords: this.settings.minRecords, pause: () => this.pauseFor(key, timeline, underLoad), parallelReplay: this.settings.parallelReplay });
      if (scan && !result.stopped) state.scanned = true;
      return result;
    })().then(
      (result) => this.onPass(key, result, lsn, underLoad),
      (err: Error) => this.onError(key, err),
    );
    const tracked: Promise<void> = run.finally(() => {
      if (state.run !== tracked) return;
      state.run = undefined;
      if (underLoad) state.loadPassEnded = true;
      // blocks of a receiver that stopped meanwhile: the timeline is idle, cut them now
      if (state.pending.length && this.attached.get(key) === timeline) this.startPass(key, timeline, [], state.pendingLsn, Date.now());
    });
    state.run = tracked;
  }

  /**
   * Before each group of a pass: go on while the timeline is quiet (a pass under load: while it
   * keeps up with its primary) and nothing scans its store (a full backup: a pass in parallel made
   * one take two to three times as long); wait (polling) while not; stop once detached.
   */
  private pauseFor(key: string, timeline: CompactedTimeline, underLoad = false): Promise<boolean> | undefined {
    if (this.attached.get(key) !== timeline) return Promise.resolve(false);
    const free = () => {
      const state = this.states.get(key);
      return (state?.quiet === true || (underLoad && state?.following === true)) && timeline.reader.store.scansInProgress === 0;
    };
    if (free()) return undefined;
    return (async () => {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, POLL_QUIET_MS));
        if (this.attached.get(key) !== timeline) return false;
        if (free()) return true;
      }
    })();
  }

  /**
   * A pass now, whatever the settings and the load (an operator's request): after the one running,
   * if any, over every block with history, at `lsn`. It does not wait for quiet or for scans.
   */
  async compactNow(key: string, timeline: CompactedTimeline, lsn: Lsn): Promise<HistoryCutResult> {
    const state = this.state(key);
    this.attached.set(key, timeline);
    while (state.run) await state.run;
    // marked running before anything is awaited: no other pass may start meanwhile
    let done!: () => void;
    state.run = new Promise<void>((resolve) => (done = resolve));
    state.lastPassAt = Date.now();
    try {
      const pending = state.pending.concat(timeline.receiver?.drainWrittenPages() ?? []);
      state.pending = [];
      const pages = pending.concat(await blocksWithHistory(timeline.reader.store, lsn));
      const result = await cutHistory(timeline.reader, pages, lsn, {
        minRecords: Math.max(1, this.settings.minRecords),
        pause: () => (this.attached.get(key) === timeline ? undefined : Promise.resolve(false)),
        parallelReplay: this.settings.parallelReplay,
      });
      if (!result.stopped) state.scanned = true;
      this.onPass(key, result, lsn, false);
      return result;
    } finally {
      state.run = undefined;
      done();
      // blocks of a receiver that stopped meanwhile
      if (state.pending.length && this.attached.get(key) === timeline) this.startPass(key, timeline, [], state.pendingLsn, Date.now());
    }
  }

  /** Forgets a timeline being detached; settles once its pass (if any) has stopped. */
  async detach(key: string): Promise<void> {
    this.attached.delete(key);
    const run = this.states.get(key)?.run;
    this.states.delete(key);
    await run;
  }

  /** Settles when the timeline has no pass running (tests, probes). */
  async idle(key: string): Promise<void> {
    await this.states.get(key)?.run;
  }
}
