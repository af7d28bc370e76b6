// Shared helpers for the ingest benchmarks (not tests: no asserts, they print figures and ratios).
import { readdirSync, readFileSync } from "node:fs";

export const MB = 1024 * 1024;

export function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

/** One overwritten progress line on stderr (a newline when stderr is not a terminal). */
export function progress(line: string) {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[K${line}`);
  else process.stderr.write(`${line}\n`);
}

export function progressDone() {
  if (process.stderr.isTTY) process.stderr.write("\n");
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * VmRSS and VmHWM of a process in bytes (undefined once it has exited), and VmRSS split into
 * anonymous memory (heaps) and file pages (e.g. LevelDB's memory-mapped table files, which the
 * kernel can drop at any time).
 */
export function readMemory(pid: number): { rss: number; hwm: number; anon: number; file: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(/^(\w+):\s+(\d+) kB/m.exec(status.split("\n").find((l) => l.startsWith(field + ":")) ?? "")?.[2] ?? 0);
    return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024, anon: kb("RssAnon") * 1024, file: kb("RssFile") * 1024 };
  } catch {
    return undefined;
  }
}

/** CPU time (user + system, all threads, children not included) a process has used so far, in seconds. */
export function readCpuSeconds(pid: number): number | undefined {
  try {
    // the command name (field 2) may hold spaces: count fields after its closing parenthesis
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in USER_HZ (100 on Linux)
  } catch {
    return undefined;
  }
}

/**
 * Waits until a process has gone quiet: less than `share` of one core in every `windowMs` window
 * for `quietMs` on end (e.g. a pageserver done with the work a catch-up left behind: materializing
 * pages, a compaction pass), or until `timeoutMs`. Returns when the quiet began (seconds from the
 * call) and the CPU used until then.
 */
export async function waitUntilIdle(pid: number, options: { share?: number; windowMs?: number; quietMs?: number; timeoutMs?: number } = {}): Promise<{ seconds: number; cpuSeconds: number; idle: boolean }> {
  const { share = 0.05, windowMs = 1000, quietMs = windowMs, timeoutMs = 120_000 } = options;
  const start = performance.now();
  const cpuStart = readCpuSeconds(pid) ?? 0;
  let before = cpuStart;
  let quietSince: { at: number; cpu: number } | undefined;
  for (;;) {
    await sleep(windowMs);
    const now = readCpuSeconds(pid) ?? before;
    const elapsed = performance.now() - start;
    if (now - before < (share * windowMs) / 1000) {
      quietSince ??= { at: elapsed - windowMs, cpu: before };
      if (elapsed - quietSince.at >= quietMs) return { seconds: quietSince.at / 1000, cpuSeconds: quietSince.cpu - cpuStart, idle: true };
    } else quietSince = undefined;
    if (elapsed >= timeoutMs) return { seconds: elapsed / 1000, cpuSeconds: now - cpuStart, idle: false };
    before = now;
  }
}

/**
 * CPU seconds (user + system) of a process's threads, summed by thread name (the comm of each /proc/<pid>/task entry:
 * the main thread carries the process name, libuv's pool "libuv-worker", V8's GC and compiler
 * helpers "V8 DefaultWorke"; threads started by native addons keep the process name unless they
 * set one). Threads that exited are not counted.
 */
export function readThreadCpuSeconds(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const name = tid === String(pid) ? "main" : `${stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"))}:${tid}`;
      out.set(name, (out.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100);
    } catch {
      // the thread exited meanwhile
    }
  }
  return out;
}

/** Samples a process's RSS every `intervalMs`; stop() returns the peak RSS, last VmHWM and samples. */
export function sampleMemory(pid: number, intervalMs = 200) {
  let peakRss = 0;
  let peakAnon = 0;
  let fileAtPeak = 0;
  let hwm = 0;
  let last = 0;
  const samples: Array<{ t: number; rss: number }> = [];
  const started = Date.now();
  const tick = () => {
    const m = readMemory(pid);
    if (!m) return;
    last = m.rss;
    if (m.rss > peakRss) fileAtPeak = m.file;
    peakRss = Math.max(peakRss, m.rss);
    peakAnon = Math.max(peakAnon, m.anon);
    hwm = Math.max(hwm, m.hwm);
    samples.push({ t: Date.now() - started, rss: m.rss });
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    get current() {
      return last;
    },
    get peak() {
      return peakRss;
    },
    stop() {
      tick();
      clearInterval(timer);
      return { peakRss, hwm, samples, peakAnon, fileAtPeak };
    },
  };
}

export const fmtMB = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

/** The p-th percentile (0..100) of a list of numbers (nearest rank). */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/**
 * Runs `one(i)` with `inflight` calls outstanding at all times until `seconds` have passed (or
 * `maxOps` were started); returns ops completed, wall seconds and per-op latencies in ms.
 */
export async function runConcurrent(one: (i: number) => Promise<unknown>, inflight: number, seconds: number, maxOps = Infinity) {
  const latencies: number[] = [];
  let started = 0;
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline && started < maxOps) {
      const i = started++;
      const s = performance.now();
      await one(i);
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  const wall = (performance.now() - t0) / 1000;
  return { ops: latencies.length, seconds: wall, perSecond: latencies.length / wall, latencies };
}

export const fmtMs = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
