// Optional CPU profiler for the pageserver in benchmarks (Node 20 does not allow --cpu-prof in
// NODE_OPTIONS):  BENCH_DAEMON_NODE_OPTIONS="--require ./bench/cpu-profile-preload.cjs"
// Writes a .cpuprofile (open in Chrome DevTools) into STRATA_BENCH_PROF_DIR (default /tmp) when the
// process exits normally (the daemon exits on SIGTERM after its graceful shutdown). SIGUSR2 writes
// the profile so far (strata-<pid>-<n>.cpuprofile) and starts a new one: benchmarks send it around
// the window they measure, so that window has a profile of its own.
const inspector = require("node:inspector");
const fs = require("node:fs");
const path = require("node:path");
const session = new inspector.Session();
session.connect();
session.post("Profiler.enable");
session.post("Profiler.setSamplingInterval", { interval: 1000 });
session.post("Profiler.start");
const dir = process.env.STRATA_BENCH_PROF_DIR || "/tmp";
let windows = 0;
process.on("SIGUSR2", () => {
  session.post("Profiler.stop", (err, result) => {
    if (!err) fs.writeFileSync(path.join(dir, `strata-${process.pid}-${++windows}.cpuprofile`), JSON.stringify(result.profile));
    session.post("Profiler.start");
  });
});
process.on("exit", () => {
  session.post("Profiler.stop", (err, result) => {
    if (err) return;
    fs.writeFileSync(path.join(dir, `strata-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
  });
});
