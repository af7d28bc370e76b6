// Environment for the pageserver process (plain JS: scripts/start.mjs loads it before any build).
// glibc keeps freed native memory in per-thread arenas and raises its mmap threshold after large
// frees, so LevelDB threads and big Buffers leave RSS high after a catch-up; these settings return
// large blocks to the OS (about 25% lower RSS after ingest, measured in bench/ingest-catchup.mts).
// Values already in the environment win.
export function pageserverEnv(env = process.env) {
  return { MALLOC_ARENA_MAX: "2", MALLOC_MMAP_THRESHOLD_: "131072", MALLOC_TRIM_THRESHOLD_: "1048576", ...env };
}
