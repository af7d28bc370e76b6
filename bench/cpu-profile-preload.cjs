// Optional CPU profiler for the pageserver in benchmarks (Node 20 does not allow --cpu-prof in
// NODE_OPTIONS):  BENCH_DAEMON_NODE_OPTIONS="--require ./bench/cpu-profile-preload.cjs"
// Writes a .cpuprofile (open in Chrome DevTools) into STRATA_BENCH_PROF_DIR (default /tmp) when the
// process exits normally (the daemon exits on SIGTERM after its graceful shutdown).
const inspector = require("node:inspector");
const fs = require("node:fs");
const path = require("node:path");
const session = new inspector.Session();
session.connect();
session.post("Profiler.enable");
session.post("Profiler.setSamplingInterval", { interval: 1000 });
session.post("Profiler.start");
process.on("exit", () => {
  session.post("Profiler.stop", (err, result) => {
    if (err) return;
    const dir = process.env.STRATA_BENCH_PROF_DIR || "/tmp";
    fs.writeFileSync(path.join(dir, `strata-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
  });
});
