// A pool of redo worker threads (Neon runs WAL redo in separate processes; here they are
// threads of the pageserver). GetPage hands a long chain to a worker, so pages rebuild on every
// core while the main thread keeps reading the store and serving clients. Workers start when
// the first long chain is read; until one is ready, and when all are busy, the caller replays
// on its own thread (`replay` returns undefined), so a read never waits for a thread to start.
import os from "node:os";
import { Worker } from "node:worker_threads";
import type { JobReply, JobRequest } from "./worker.ts";
import { encodeReplayJob, type ReplayJob } from "./replay-job.ts";

/** chains shorter than this replay on the caller's thread */
const DEFAULT_MIN_VERSIONS = 32;
/** jobs queued on one worker before the caller replays on its own thread */
const JOBS_PER_WORKER = 64;
/** workers that exit unexpectedly are restarted this many times in all, then the pool stays off */
const RESTARTS = 8;

interface PoolWorker {
  thread: Worker;
  ready: boolean;
  /** settles when the thread is ready or has exited */
  started: Promise<void>;
  jobs: Map<number, { resolve: (page: Buffer) => void; reject: (err: Error) => void }>;
}

export interface RedoPoolStats {
  /** worker threads running */
  readonly workers: number;
  /** pages rebuilt by workers */
  jobs: number;
  /** versions they replayed */
  versions: number;
  /** jobs a worker could not finish (replayed again on the caller's thread) */
  failed: number;
}

/** Counters, with `workers` read from the list of threads itself. */
function statsOf(workers: readonly PoolWorker[]): RedoPoolStats {
  return {
    get workers() {
      return workers.length;
    },
    jobs: 0,
    versions: 0,
    failed: 0,
  };
}

export class RedoPool {
  private readonly workers: PoolWorker[] = [];
  private nextId = 1;
  private restarts = 0;
  private disabled = false;
  private closing = false;
  readonly stats: RedoPoolStats = statsOf(this.workers);

  /**
   * `size` worker threads at most (0: none, every chain replays on the caller's thread), for
   * chains of `minVersions` versions or more: a shorter one replays faster than a round trip to
   * a thread (tens of microseconds). With `callerFirst`, a read that is alone (no other read in
   * flight, no job on the workers) replays on its caller's thread too, sooner than through a
   * worker; without it every long chain goes to a worker that can take it.
   */
  constructor(
    readonly size: number,
    readonly minVersions = DEFAULT_MIN_VERSIONS,
    readonly callerFirst = true,
  ) {}

  /**
   * Rebuilds the job's page on a worker. Undefined when no worker can take it now: the caller
   * replays it itself. The promise rejects if the worker fails; the caller then replays it
   * itself too, which reports the error as a replay on its own thread would.
   */
  replay(job: ReplayJob, versionCount = job.versions.length): Promise<Buffer> | undefined {
    if (this.size === 0 || this.disabled) return undefined;
    if (this.workers.length < this.size) this.startWorker();
    let chosen: PoolWorker | undefined;
    for (const worker of this.workers) if (worker.ready && worker.jobs.size < JOBS_PER_WORKER && (!chosen || worker.jobs.size < chosen.jobs.size)) chosen = worker;
    if (!chosen) return undefined;
    const worker = chosen;
    const id = this.nextId++;
    const encoded = encodeReplayJob(job); // (a buffer of its own, transferred whole)
    return new Promise<Buffer>((resolve, reject) => {
      worker.jobs.set(id, {
        resolve: (page) => {
          this.stats.jobs++;
          this.stats.versions += versionCount;
          resolve(page);
        },
        reject: (err) => {
          this.stats.failed++;
          reject(err);
        },
      });
      // a pending job keeps the process alive; an idle pool does not
      if (worker.jobs.size === 1) worker.thread.ref();
      const request: JobRequest = { id, job: encoded.buffer as ArrayBuffer };
      worker.thread.postMessage(request, [encoded.buffer as ArrayBuffer]);
    });
  }

  /** Jobs handed to workers and not yet back. */
  get pending(): number {
    let n = 0;
    for (const worker of this.workers) n += worker.jobs.size;
    return n;
  }

  /**
   * Starts the workers now rather than at the first long chain (a pageserver starting up), and
   * settles once each is ready or has failed to start.
   */
  async start(): Promise<void> {
    if (this.disabled) return;
    while (this.workers.length < this.size) this.startWorker();
    await Promise.all(this.workers.map((w) => w.started));
  }

  private startWorker(): void {
    const thread = new Worker(new URL("./worker-entry.mjs", import.meta.url), {
      // a thread needs little besides the chain it replays. Its young generation is kept small:
      // at the default size each thread held about 30 MB more once it had replayed a while (the
      // objects a replay makes die young; replay speed measured the same with 8 MB)
      resourceLimits: { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 8 },
    });
    let started!: () => void;
    const worker: PoolWorker = { thread, ready: false, started: new Promise<void>((resolve) => (started = resolve)), jobs: new Map() };
    this.workers.push(worker);
    thread.on("message", (message: JobReply | { ready: true }) => {
      if ("ready" in message) {
        worker.ready = true;
        // an idle pool does not keep the process alive; a starting one does, until it is ready
        // (unref'd at once, an awaited start() left nothing to wait for)
        thread.unref();
        started();
        return;
      }
      const job = worker.jobs.get(message.id);
      if (!job) return;
      worker.jobs.delete(message.id);
      if (worker.jobs.size === 0) thread.unref();
      if ("error" in message) job.reject(new Error(`redo worker: ${message.error}`));
      else job.resolve(Buffer.from(message.page));
    });
    thread.on("error", () => {
      // reported by "exit" too, which cleans up
    });
    thread.on("exit", () => {
      started();
      const index = this.workers.indexOf(worker);
      if (index >= 0) this.workers.splice(index, 1);
      for (const job of worker.jobs.values()) job.reject(new Error("redo worker exited"));
      worker.jobs.clear();
      // one that never got ready will not start next time either (e.g. no loader for TypeScript)
      if (!this.closing && (!worker.ready || ++this.restarts > RESTARTS)) this.disabled = true;
    });
  }

  /** Stops the workers (jobs in flight fail over to their callers). */
  async close(): Promise<void> {
    this.closing = true;
    try {
      await Promise.all(this.workers.map((w) => w.thread.terminate()));
    } finally {
      this.closing = false;
    }
  }
}

/**
 * Redo workers for the process: STRATA_REDO_WORKERS (0 for none), by default one per core up to
 * 4 (none on one core). Throws for a value that is not a whole number: the pageserver checks it
 * at startup.
 */
export function redoWorkersSetting(env: Record<string, string | undefined> = process.env): number {
  const configured = env.STRATA_REDO_WORKERS;
  if (configured !== undefined && configured.trim() !== "") {
    const n = Number(configured);
    if (!Number.isInteger(n) || n < 0) throw new Error(`STRATA_REDO_WORKERS must be a whole number (0 for none), not ${JSON.stringify(configured)}`);
    return n;
  }
  const cores = os.availableParallelism();
  return cores < 2 ? 0 : Math.min(4, cores);
}

function sharedPoolSize(): number {
  try {
    return redoWorkersSetting();
  } catch {
    // (importing the package must not fail over it; the pageserver refuses to start)
    return redoWorkersSetting({});
  }
}

export const sharedRedoPool = new RedoPool(sharedPoolSize());
