// `strata`: run the pageserver, and operate it through its typed API.
// Exit codes: 0 ok, 1 error (message on stderr), 2 usage.
import { Command, CommanderError, Option } from "commander";
import { createStrataClient, errorCode, DEFAULT_API_URL } from "@strata/api/client";
import { randomBytes } from "node:crypto";
import { drawProgress, endProgress, formatProgress } from "./progress.ts";
import { VERSION } from "./version.ts";

const program = new Command();

class UsageError extends Error {}

/** a command that reports stdout's write errors itself (see main) */
let stdoutErrorsReported = false;

function serverUrl(cmd: Command): string {
  return cmd.optsWithGlobals().server ?? process.env.STRATA_API ?? DEFAULT_API_URL;
}

function client(cmd: Command) {
  return createStrataClient(serverUrl(cmd), "cli");
}

function print(json: boolean, value: unknown, human: () => string) {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + "\n" : human() + "\n");
}

/** "812 B", "1.4 MiB", "12.0 GiB" */
function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  if (rows.length === 0) return "(none)";
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? "").length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd();
  // headers in the words the API and docs use: lastRecordLsn -> LAST_RECORD_LSN
  const header = (c: string) => c.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
  return [line(columns.map(header)), ...rows.map((r) => line(columns.map((c) => String(r[c] ?? ""))))].join("\n");
}

const ID_SHAPE = /^[0-9a-f]{32}$/;

function requireId(value: string, what: string): string {
  if (!ID_SHAPE.test(value)) throw new UsageError(`invalid ${what} "${value}": expected 32 lowercase hex characters`);
  return value;
}

/** A --tenant value: a tenant id as given, or a tenant name looked up. */
async function tenantArg(cmd: Command, value: string): Promise<string> {
  if (ID_SHAPE.test(value)) return value;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(value)) throw new UsageError(`invalid tenant "${value}": give a tenant name or a 32-hex tenant id`);
  const found = (await client(cmd).tenants.list.query()).find((t) => t.name === value);
  if (!found) throw new Error(`NOT_FOUND: no tenant named "${value}" (give a tenant name or a 32-hex tenant id)`);
  return found.id;
}

/** --tenant and --timeline, names looked up. */
async function timelineTarget(cmd: Command, opts: { tenant: string; timeline: string }): Promise<{ tenantId: string; timelineId: string }> {
  const tenantId = await tenantArg(cmd, opts.tenant);
  return { tenantId, timelineId: await timelineArg(cmd, tenantId, opts.timeline) };
}

/** A --timeline value: a timeline id as given, or a branch name looked up in the tenant. */
async function timelineArg(cmd: Command, tenantId: string, value: string): Promise<string> {
  if (ID_SHAPE.test(value)) return value;
  const timelines = await client(cmd).branches.list.query({ tenantId });
  const found = timelines.find((t) => t.name === value);
  if (!found) throw new Error(`NOT_FOUND: no branch named "${value}" in tenant ${tenantId} (give a branch name or a 32-hex timeline id)`);
  return found.id;
}

program
  .name("strata")
  .description("Strata pageserver: PostgreSQL pages at any LSN, with branching")
  .version(VERSION)
  .option("--server <url>", `pageserver API URL (env STRATA_API, default ${DEFAULT_API_URL})`)
  .exitOverride()
  .configureOutput({ writeErr: (s) => process.stderr.write(s) });

program
  .command("pageserver")
  .description("run the pageserver daemon in the foreground")
  .option("--data <dir>", "data directory (env STRATA_DATA, default .strata)")
  .option("--pg-listen <host:port>", "page service address", "127.0.0.1:64000")
  .option("--http-listen <host:port>", "HTTP API and /metrics address", "127.0.0.1:9898")
  .action(async (opts) => {
    const { startPageserver } = await import("./pageserver.ts");
    const server = await startPageserver({
      dataDir: opts.data ?? process.env.STRATA_DATA ?? ".strata",
      pgListen: opts.pgListen,
      httpListen: opts.httpListen,
    });
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    await server.close();
  });

const tenant = program.command("tenant").description("manage tenants");

tenant
  .command("create")
  .description("create a tenant (with an empty main timeline)")
  .option("--id <hex32>", "tenant id (default: random)")
  .option("--name <name>", "a unique name (then --tenant takes it instead of the id)")
  .option("--from-primary <postgres-url>", "import and follow this PostgreSQL 15 primary as the main timeline")
  .option("--slot <name>", "physical replication slot to create on the primary")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const id = opts.id === undefined ? undefined : requireId(opts.id, "tenant id");
    if (opts.slot && !opts.fromPrimary) throw new UsageError("--slot needs --from-primary");
    if (opts.fromPrimary && !/^postgres(ql)?:\/\//.test(opts.fromPrimary)) throw new UsageError(`invalid --from-primary "${opts.fromPrimary}": expected postgres://user[:password]@host:port[/db]`);
    // with a primary, pick the id here so the import's progress can be followed while create runs
    const tenantId = id ?? (opts.fromPrimary ? randomBytes(16).toString("hex") : undefined);
    const input = { ...(tenantId ? { id: tenantId } : {}), ...(opts.name ? { name: opts.name } : {}), ...(opts.fromPrimary ? { fromPrimary: opts.fromPrimary } : {}), ...(opts.slot ? { slot: opts.slot } : {}) };
    if (opts.fromPrimary && !opts.json) process.stderr.write("importing a base backup from the primary…\n");
    const api = client(cmd);
    let finished = false;
    const tick =
      tenantId && opts.fromPrimary && process.stderr.isTTY
        ? setInterval(() => {
            api.tenants.importProgress
              .query({ id: tenantId })
              .then((p) => p && !finished && drawProgress(formatProgress(p.bytes, p.totalBytes, p.elapsedMs)))
              .catch(() => {});
          }, 300)
        : undefined;
    let created;
    try {
      created = await api.tenants.create.mutate(input);
    } finally {
      finished = true;
      if (tick) {
        clearInterval(tick);
        endProgress();
      }
    }
    print(opts.json, created, () => `created tenant ${created.id}${created.name ? ` "${created.name}"` : ""} (main timeline ${created.timelines[0]?.id ?? "-"})`);
  });

tenant
  .command("list")
  .description("list tenants")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const tenants = await client(cmd).tenants.list.query();
    print(opts.json, tenants, () => table(tenants.map((t) => ({ ...t, name: t.name ?? "-" })), ["id", "name", "state", "timelineCount", "createdAt"]));
  });

tenant
  .command("get")
  .description("show one tenant")
  .argument("<tenant>", "tenant id or name")
  .option("--json", "machine-readable output")
  .action(async (id, opts, cmd) => {
    const found = await client(cmd).tenants.get.query({ id: await tenantArg(cmd, id) });
    print(opts.json, found, () =>
      [
        `tenant ${found.id}${found.name ? `  name=${found.name}` : ""}  state=${found.state}  created=${found.createdAt}  storage=${formatSize(found.physicalSizeBytes)}`,
        table(found.timelines, ["id", "name", "ancestorLsn", "state"]),
      ].join("\n"),
    );
  });

tenant
  .command("delete")
  .description("delete a tenant and all its data")
  .argument("<tenant>", "tenant id or name")
  .option("--json", "machine-readable output")
  .action(async (id, opts, cmd) => {
    const result = await client(cmd).tenants.delete.mutate({ id: await tenantArg(cmd, id) });
    for (const warning of result.warnings) console.error(`warning: ${warning}`);
    print(opts.json, result, () => `deleted tenant ${id}`);
  });

const timeline = program.command("timeline").description("inspect timelines (branches)");

timeline
  .command("list")
  .description("list a tenant's timelines")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const timelines = await client(cmd).timelines.list.query({ tenantId: await tenantArg(cmd, opts.tenant) });
    print(opts.json, timelines, () =>
      table(
        timelines.map((t) => ({
          ...t,
          parentTimelineId: t.parentTimelineId ?? "-",
          ancestorLsn: t.parentTimelineId ? t.ancestorLsn : "-",
          lagBytes: t.lagBytes ?? "-",
          primaryFlushLsn: t.primaryFlushLsn ?? "-",
          dataSize: t.logicalSizeBytes === null ? "-" : formatSize(t.logicalSizeBytes),
          storage: formatSize(t.physicalSizeBytes),
        })),
        ["id", "name", "parentTimelineId", "ancestorLsn", "lastRecordLsn", "diskConsistentLsn", "primaryFlushLsn", "lagBytes", "dataSize", "storage", "state"],
      ),
    );
  });

timeline
  .command("get")
  .description("show one timeline")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--timeline <timeline>", "timeline id or branch name")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const found = await client(cmd).timelines.get.query({
      ...(await timelineTarget(cmd, opts)),
    });
    // (a timeline without a parent has no branch point: its ancestorLsn 0/0 means nothing)
    const shown = { ...found, ...(found.parentTimelineId ? {} : { ancestorLsn: null }) };
    print(opts.json, found, () =>
      Object.entries(shown)
        .map(([k, v]) => `${k}: ${v === null || v === undefined ? "-" : typeof v === "object" ? JSON.stringify(v) : v}`)
        .join("\n"),
    );
  });

timeline
  .command("compact")
  .description("cut the timeline's history now: each written block's page stored as an image at the durable LSN, older versions moved aside")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--timeline <timeline>", "timeline id or branch name")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const result = await client(cmd).timelines.compact.mutate({
      ...(await timelineTarget(cmd, opts)),
    });
    print(opts.json, result, () => `compacted at ${result.lsn}: ${result.images} block images stored, ${result.movedVersions} versions moved to history, ${result.unchanged} blocks unchanged${result.failed ? `, ${result.failed} blocks could not be rebuilt` : ""}`);
  });

timeline
  .command("set-primary")
  .description("follow another server of the same database system from now on (after a failover: the promoted standby at its address)")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--timeline <timeline>", "timeline id or branch name")
  .requiredOption("--primary <postgres-url>", "the server to follow")
  .option("--slot <name>", "physical replication slot on it (default: the timeline's current slot name; created if missing)")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    if (!/^postgres(ql)?:\/\//.test(opts.primary)) throw new UsageError(`invalid --primary "${opts.primary}": expected postgres://user[:password]@host:port[/db]`);
    const result = await client(cmd).timelines.setPrimary.mutate({
      ...(await timelineTarget(cmd, opts)),
      primary: opts.primary,
      ...(opts.slot ? { slot: opts.slot } : {}),
    });
    for (const warning of result.warnings) console.error(`warning: ${warning}`);
    print(opts.json, result, () => `timeline ${result.timelineId} follows ${result.primary} through slot ${result.slot}${result.slotCreated ? " (created)" : ""}, from ${result.resumeLsn}`);
  });

function requireLsn(value: string, what: string): string {
  if (!/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(value)) throw new UsageError(`invalid ${what} "${value}": expected an LSN like 0/16B3748`);
  return value;
}

program
  .command("wait-lsn")
  .description("return once the timeline has durably stored WAL up to an LSN")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--timeline <timeline>", "timeline id or branch name")
  .requiredOption("--lsn <X/Y>", "LSN to wait for")
  .option("--timeout <seconds>", "give up after this many seconds", "60")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const timeoutSeconds = Number(opts.timeout);
    if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) throw new UsageError(`invalid --timeout "${opts.timeout}"`);
    const result = await client(cmd).timelines.waitLsn.mutate({
      ...(await timelineTarget(cmd, opts)),
      lsn: requireLsn(opts.lsn, "--lsn"),
      timeoutSeconds,
    });
    print(opts.json, result, () => `durable up to ${result.diskConsistentLsn} (>= ${result.lsn})`);
  });

program
  .command("getpage")
  .description("write the 8192-byte page of a relation block as of an LSN (GetPage@LSN)")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--timeline <timeline>", "timeline id or branch name")
  .requiredOption("--rel <spc/db/rel>", "relation file node, e.g. 1663/5/16384")
  .option("--fork <fork>", "main, fsm, vm or init", "main")
  .requiredOption("--block <n>", "block number")
  .option("--lsn <X/Y|latest>", "LSN to read at", "latest")
  .option("--wait <seconds>", "how long to wait for an LSN not yet ingested", "30")
  .requiredOption("--out <file>", "output file, or - for stdout")
  .action(async (opts, cmd) => {
    if (!/^\d+\/\d+\/\d+$/.test(opts.rel)) throw new UsageError(`invalid --rel "${opts.rel}": expected SPC/DB/REL, e.g. 1663/5/16384`);
    if (!["main", "fsm", "vm", "init"].includes(opts.fork)) throw new UsageError(`invalid --fork "${opts.fork}": expected main, fsm, vm or init`);
    if (!/^\d+$/.test(opts.block)) throw new UsageError(`invalid --block "${opts.block}"`);
    const lsn = opts.lsn === "latest" ? "latest" : requireLsn(opts.lsn, "--lsn");
    const result = await client(cmd).timelines.getPage.query({
      ...(await timelineTarget(cmd, opts)),
      rel: opts.rel,
      fork: opts.fork,
      block: Number(opts.block),
      lsn,
      waitSeconds: Number(opts.wait),
    });
    const page = Buffer.from(result.page, "base64");
    if (opts.out === "-") process.stdout.write(page);
    else {
      const { writeFileSync } = await import("node:fs");
      writeFileSync(opts.out, page);
      process.stderr.write(`wrote ${page.length} bytes of ${opts.rel} ${opts.fork} block ${opts.block} at ${result.lsn} to ${opts.out}\n`);
    }
  });

program
  .command("fullbackup")
  .description("write a tar of a complete PostgreSQL 15 data directory at an LSN (stock postgres starts from it)")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--timeline <timeline>", "timeline id or branch name")
  .option("--lsn <X/Y>", "LSN (a record boundary; default: after every commit the timeline's primary or endpoint has flushed)")
  .option("--wait <seconds>", "without --lsn: how long to wait for ingest to reach what the source has flushed", "30")
  .requiredOption("--out <file>", "output tar file, or - for stdout")
  .action(async (opts, cmd) => {
    const tenantId = await tenantArg(cmd, opts.tenant);
    const timelineId = await timelineArg(cmd, tenantId, opts.timeline);
    if (!/^\d+(\.\d+)?$/.test(opts.wait)) throw new UsageError(`invalid --wait "${opts.wait}": expected seconds`);
    // "latest" is resolved here, not by the page service (whose latest is what it has ingested,
    // as Neon's is): a commit acknowledged before this command is in the backup
    const lsn = opts.lsn ? requireLsn(opts.lsn, "--lsn") : (await client(cmd).timelines.latestLsn.query({ tenantId, timelineId, waitSeconds: Number(opts.wait) })).lsn;
    const health = await client(cmd).health.query();
    const [host, port] = [health.pageServiceAddress.replace(/:\d+$/, ""), Number(health.pageServiceAddress.split(":").pop())];
    const { PageServiceClient } = await import("@strata/core");
    const { closeSync, openSync, writeSync } = await import("node:fs");
    // a file is written synchronously: the client hands over views of its read buffer
    const fd = opts.out === "-" ? undefined : openSync(opts.out, "w");
    // a backup cut short is a failed backup: stdout's errors are this command's to report (main)
    if (fd === undefined) stdoutErrorsReported = true;
    const page = await PageServiceClient.connect(host, port);
    let bytes = 0;
    const started = Date.now();
    const progress = opts.out !== "-" && process.stderr.isTTY;
    const tick = setInterval(() => {
      if (progress) drawProgress(formatProgress(bytes, null, Date.now() - started));
    }, 200);
    try {
      await page.fullbackup(tenantId, timelineId, lsn, (chunk) => {
        bytes += chunk.length;
        if (fd !== undefined) {
          for (let done = 0; done < chunk.length; ) done += writeSync(fd, chunk, done);
          return;
        }
        // the piece stays valid (reading pauses) until stdout has taken it; its error (EPIPE
        // when the reader went away) arrives here and fails the command
        return new Promise<void>((resolve, reject) => process.stdout.write(chunk, (err) => (err ? reject(err) : resolve())));
      });
    } finally {
      clearInterval(tick);
      page.close();
      if (fd !== undefined) closeSync(fd);
    }
    if (opts.out !== "-") process.stderr.write(`${progress ? "\r" : ""}wrote ${(bytes / 1048576).toFixed(1)} MB (at ${lsn}) to ${opts.out} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  });

program
  .command("waldump")
  .description("print the stored WAL records, one per line, comparable with pg_waldump")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--timeline <timeline>", "timeline id or branch name")
  .option("--from <X/Y>", "first record LSN (inclusive)")
  .option("--to <X/Y>", "stop before this LSN")
  .option("--limit <n>", "at most this many records", "1000000")
  .action(async (opts, cmd) => {
    const result = await client(cmd).timelines.waldump.query({
      ...(await timelineTarget(cmd, opts)),
      from: opts.from ? requireLsn(opts.from, "--from") : undefined,
      to: opts.to ? requireLsn(opts.to, "--to") : undefined,
      limit: Number(opts.limit),
    });
    process.stdout.write(result.lines.join("\n") + (result.lines.length ? "\n" : ""));
    if (result.truncated) process.stderr.write(`strata: output truncated at ${opts.limit} records (use --limit or --from)\n`);
  });

const branch = program.command("branch").description("branch a timeline at any LSN or time");

branch
  .command("create")
  .description("create a branch (O(1): no data is copied)")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--name <name>", "branch name, unique in the tenant")
  .option("--parent <branch>", "parent branch name or timeline id (default: the main timeline)")
  .option("--lsn <X/Y>", "branch point (default: the parent's last_record_lsn)")
  .option("--at <iso-time>", "branch at the last commit at or before this time")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    if (opts.lsn && opts.at) throw new UsageError("give either --lsn or --at, not both");
    if (opts.at && Number.isNaN(Date.parse(opts.at))) throw new UsageError(`invalid --at "${opts.at}": expected an ISO 8601 time`);
    const created = await client(cmd).branches.create.mutate({
      tenantId: await tenantArg(cmd, opts.tenant),
      name: opts.name,
      // a timeline id when it looks like one (32 lowercase hex), else a branch name
      ...(opts.parent === undefined ? {} : ID_SHAPE.test(opts.parent) ? { parentTimelineId: opts.parent } : { parentBranch: opts.parent }),
      lsn: opts.lsn ? requireLsn(opts.lsn, "--lsn") : undefined,
      at: opts.at,
    });
    print(opts.json, created, () =>
      `created branch ${created.name} (${created.id}) from ${created.parentTimelineId} at ${created.ancestorLsn}` +
        (created.requestedLsn !== created.ancestorLsn ? ` (requested ${created.requestedLsn}, rounded to a record boundary)` : ""),
    );
  });

branch
  .command("delete")
  .description("delete a branch and its data (refused while it has branches or a running endpoint)")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--name <branch>", "branch name or timeline id")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const deleted = await client(cmd).branches.delete.mutate({ tenantId: await tenantArg(cmd, opts.tenant), branch: opts.name });
    print(opts.json, deleted, () => `deleted branch ${deleted.name} (${deleted.id})`);
  });

branch
  .command("list")
  .description("show the tenant's branch tree with branch points")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const timelines = await client(cmd).branches.list.query({ tenantId: await tenantArg(cmd, opts.tenant) });
    print(opts.json, timelines, () => {
      const lines: string[] = [];
      const walk = (parent: string | null, depth: number) => {
        for (const t of timelines.filter((x) => x.parentTimelineId === parent)) {
          const at = parent ? ` @ ${t.ancestorLsn}` : "";
          lines.push(`${"  ".repeat(depth)}${depth ? "└─ " : ""}${t.name} ${t.id}${at}  last_record_lsn=${t.lastRecordLsn}`);
          walk(t.id, depth + 1);
        }
      };
      walk(null, 0);
      return lines.join("\n") || "(none)";
    });
  });

const endpoint = program.command("endpoint").description("run stock PostgreSQL 15 on a branch");

endpoint
  .command("start")
  .description("start an endpoint on a branch and print its connection string")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--branch <name|id>", "branch name or timeline id")
  .option("--port <port>", "loopback port (default: a free one)")
  .option("-c, --setting <name=value>", "a postgresql.conf setting for this endpoint (repeatable), e.g. -c work_mem=64MB", (item: string, all: string[]) => [...all, item], [] as string[])
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const port = opts.port === undefined ? undefined : Number(opts.port);
    if (port !== undefined && (!Number.isInteger(port) || port < 1024 || port > 65535)) throw new UsageError(`invalid --port "${opts.port}"`);
    const settings: Record<string, string> = {};
    for (const item of opts.setting as string[]) {
      const eq = item.indexOf("=");
      if (eq <= 0) throw new UsageError(`invalid --setting "${item}": expected name=value`);
      settings[item.slice(0, eq).trim()] = item.slice(eq + 1);
    }
    if (!opts.json) process.stderr.write("building the data directory from a full backup and starting postgres…\n");
    const started = await client(cmd).endpoints.start.mutate({
      tenantId: await tenantArg(cmd, opts.tenant),
      branch: opts.branch,
      port,
      ...(Object.keys(settings).length ? { settings } : {}),
    });
    if (!opts.json && started.detachedSubscriptions?.length) {
      process.stderr.write(`disabled the subscriptions this branch inherited, and set their slot_name to NONE (their slots on the publisher stay with the cluster the branch was made from): ${started.detachedSubscriptions.join(", ")}\n`);
    }
    print(opts.json, started, () => `endpoint ${started.id} running on branch ${started.branch} (from ${started.startLsn})\n${started.connectionString}`);
  });

endpoint
  .command("logs")
  .description("the tail of the postgres log of the branch's newest endpoint")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--branch <name|id>", "branch name or timeline id")
  .option("--lines <n>", "how many lines (1-5000)", "100")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const lines = Number(opts.lines);
    if (!Number.isInteger(lines) || lines < 1 || lines > 5000) throw new UsageError(`invalid --lines "${opts.lines}": a whole number from 1 to 5000`);
    const logs = await client(cmd).endpoints.logs.query({ tenantId: await tenantArg(cmd, opts.tenant), branch: opts.branch, lines });
    print(opts.json, logs, () => logs.lines.join("\n"));
  });

endpoint
  .command("stop")
  .description("shut the branch's endpoint down; returns once the branch has all its WAL")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .requiredOption("--branch <name|id>", "branch name or timeline id")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const stopped = await client(cmd).endpoints.stop.mutate({ tenantId: await tenantArg(cmd, opts.tenant), branch: opts.branch });
    print(opts.json, stopped, () => `endpoint ${stopped.id} stopped; branch ${stopped.branch} has its WAL up to ${stopped.stopLsn}`);
  });

endpoint
  .command("list")
  .description("list a tenant's endpoints")
  .requiredOption("--tenant <tenant>", "tenant id or name")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const endpoints = await client(cmd).endpoints.list.query({ tenantId: await tenantArg(cmd, opts.tenant) });
    print(opts.json, endpoints, () =>
      table(
        endpoints.map((e) => ({ ...e, settings: Object.entries(e.settings).map(([name, value]) => `${name}=${value}`).join(" ") || "-" })),
        ["id", "branch", "state", "port", "startLsn", "stopLsn", "connectionString", "settings"],
      ),
    );
  });

program
  .command("operations")
  .description("the audit trail: every mutation (who, what, when, and how it ended), newest first")
  .option("--tenant <tenant>", "only this tenant's (id or name; the id of a deleted tenant works too)")
  .option("--limit <n>", "at most this many (1-1000)", "50")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const limit = Number(opts.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new UsageError(`invalid --limit "${opts.limit}": a whole number from 1 to 1000`);
    const operations = await client(cmd).operations.list.query({ ...(opts.tenant ? { tenantId: await tenantArg(cmd, opts.tenant) } : {}), limit });
    print(opts.json, operations, () =>
      table(
        operations.map((o) => ({
          ...o,
          tenantId: o.tenantId ?? "-",
          took: o.finishedAt ? `${((Date.parse(o.finishedAt) - Date.parse(o.startedAt)) / 1000).toFixed(2)}s` : "running",
          error: o.error ? o.error.split("\n")[0].slice(0, 120) : "",
        })),
        ["id", "startedAt", "kind", "actor", "tenantId", "result", "took", "error"],
      ),
    );
  });

program
  .command("status")
  .description("is the pageserver up? version, uptime, addresses")
  .option("--json", "machine-readable output")
  .action(async (opts, cmd) => {
    const health = await client(cmd).health.query();
    print(opts.json, health, () =>
      `pageserver ${health.ok ? "up" : "down"}  version=${health.version}  uptime=${health.uptimeSeconds}s  http=${health.httpAddress}  pages=${health.pageServiceAddress}`,
    );
  });

// Options that take values are validated here, so a bad flag is a usage error (2), not a crash.
program.addOption(new Option("--no-color").hideHelp());

async function main() {
  // `strata waldump | head`: a reader that closes the pipe ends the command quietly, with the
  // status a tool ended by SIGPIPE has (128 + 13), instead of an unhandled 'error' event. (A full
  // backup to stdout reports it as its own failure instead.)
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (stdoutErrorsReported) return;
    if (err.code !== "EPIPE") process.stderr.write(`strata: writing the output: ${err.message}\n`);
    process.exit(err.code === "EPIPE" ? 141 : 1);
  });
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help/version exit 0; anything commander rejects is a usage error
      process.exit(err.exitCode === 0 ? 0 : 2);
    }
    if (err instanceof UsageError) {
      process.stderr.write(`strata: ${err.message}\n`);
      process.exit(2);
    }
    const code = errorCode(err);
    const message = (err as Error).message ?? String(err);
    if (!code && /fetch failed|ECONNREFUSED/.test(message + String((err as { cause?: unknown }).cause ?? ""))) {
      process.stderr.write(`strata: cannot reach the pageserver at ${program.opts().server ?? process.env.STRATA_API ?? DEFAULT_API_URL}: is it running?\n`);
    } else {
      process.stderr.write(`strata: ${code ? `${code}: ` : ""}${message}\n`);
    }
    process.exit(1);
  }
}

await main();
