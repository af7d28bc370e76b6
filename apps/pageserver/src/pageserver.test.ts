import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readdirSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createStrataClient, errorCode } from "@strata/api/client";
import { makeDataDir, removeDataDir, runCli, startDaemon, type Daemon } from "./test-daemon.ts";

describe("pageserver daemon with the API and CLI", () => {
  let dataDir: string;
  let daemon: Daemon;
  beforeAll(async () => {
    dataDir = makeDataDir();
    daemon = await startDaemon(dataDir);
  });
  afterAll(async () => {
    await daemon?.stop();
    removeDataDir(dataDir);
  });

  it("gives exactly one success and CONFLICT for the rest when 20 clients create the same tenant at once", async () => {
    const client = createStrataClient(daemon.apiUrl, "test");
    const id = "aa".repeat(16);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.tenants.create.mutate({ id })));
    const ok = results.filter((r) => r.status === "fulfilled");
    const conflicts = results.filter((r) => r.status === "rejected" && errorCode(r.reason) === "CONFLICT");
    expect(ok).toHaveLength(1);
    expect(conflicts).toHaveLength(19);
    const tenant = await client.tenants.get.query({ id });
    expect(tenant.timelines.map((t) => t.name)).toEqual(["main"]);
    expect(readdirSync(path.join(dataDir, "tenants"))).toEqual([id]);
    const timelines = await client.timelines.list.query({ tenantId: id });
    expect(timelines[0].attached).toBe(true);
    // bootstrapped with an empty cluster: readable from the end of initdb's shutdown checkpoint
    expect(timelines[0].lastRecordLsn).not.toBe("0/0");
    expect(timelines[0].lastRecordLsn).toBe(timelines[0].startLsn);
  });

  it("maps unknown ids to NOT_FOUND and malformed input to BAD_REQUEST with clear messages", async () => {
    const client = createStrataClient(daemon.apiUrl, "test");
    const missing = "bb".repeat(16);
    await expect(client.tenants.get.query({ id: missing })).rejects.toSatisfy((e) => errorCode(e) === "NOT_FOUND" && /not found/.test((e as Error).message));
    await expect(client.tenants.get.query({ id: "xyz" })).rejects.toSatisfy((e) => errorCode(e) === "BAD_REQUEST" && /32 lowercase hex/.test((e as Error).message));
    await expect(client.timelines.get.query({ tenantId: missing, timelineId: missing })).rejects.toSatisfy((e) => errorCode(e) === "NOT_FOUND");
    await expect(client.tenants.delete.mutate({ id: missing })).rejects.toSatisfy((e) => errorCode(e) === "NOT_FOUND");
  });

  it("records every mutation in the operation audit trail through the CLI with exit codes 0/1/2", async () => {
    const env = { STRATA_API: daemon.apiUrl };
    const created = await runCli(["tenant", "create", "--json"], env);
    expect(created.code).toBe(0);
    const tenant = JSON.parse(created.stdout);
    expect(tenant.id).toMatch(/^[0-9a-f]{32}$/);
    const list = await runCli(["tenant", "list", "--json"], env);
    expect(JSON.parse(list.stdout).map((t: { id: string }) => t.id)).toContain(tenant.id);
    const timelines = await runCli(["timeline", "list", "--tenant", tenant.id, "--json"], env);
    expect(JSON.parse(timelines.stdout)[0].name).toBe("main");
    const dup = await runCli(["tenant", "create", "--id", tenant.id], env);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/CONFLICT: tenant [0-9a-f]{32} already exists/);
    const usage = await runCli(["tenant", "get", "not/an-id"], env);
    expect(usage.code).toBe(2);
    const unknownName = await runCli(["tenant", "get", "no-such-tenant"], env);
    expect(unknownName.code).toBe(1);
    expect(unknownName.stderr).toMatch(/NOT_FOUND: no tenant named "no-such-tenant"/);

    // a named tenant: --tenant (and tenant get/delete) take the name wherever they take the id
    const named = await runCli(["tenant", "create", "--name", "billing-prod", "--json"], env);
    expect(named.code, named.stderr).toBe(0);
    const namedTenant = JSON.parse(named.stdout);
    expect(namedTenant.name).toBe("billing-prod");
    expect((await runCli(["tenant", "list"], env)).stdout).toMatch(new RegExp(`${namedTenant.id}\\s+billing-prod\\s+active`));
    const byName = await runCli(["timeline", "list", "--tenant", "billing-prod", "--json"], env);
    expect(JSON.parse(byName.stdout).map((t: { tenantId: string; name: string }) => [t.tenantId, t.name])).toEqual([[namedTenant.id, "main"]]);
    const got = (await runCli(["tenant", "get", "billing-prod"], env)).stdout;
    expect(got).toContain(`tenant ${namedTenant.id}  name=billing-prod`);
    expect(got).toMatch(/storage=\d+(\.\d)? (B|KiB|MiB)/);
    const sameName = await runCli(["tenant", "create", "--name", "billing-prod"], env);
    expect(sameName.code).toBe(1);
    expect(sameName.stderr).toMatch(/CONFLICT: a tenant named "billing-prod" already exists/);
    const idShaped = await runCli(["tenant", "create", "--name", "ab".repeat(16)], env);
    expect(idShaped.code).toBe(1);
    expect(idShaped.stderr).toMatch(/BAD_REQUEST: invalid tenant name .* looks like a tenant id/);
    expect((await runCli(["tenant", "delete", "billing-prod"], env)).code).toBe(0);
    expect((await runCli(["tenant", "get", "billing-prod"], env)).code).toBe(1);
    const unknownCommand = await runCli(["frobnicate"], env);
    expect(unknownCommand.code).toBe(2);
    const status = await runCli(["status", "--json"], env);
    expect(JSON.parse(status.stdout).ok).toBe(true);
    const deleted = await runCli(["tenant", "delete", tenant.id], env);
    expect(deleted.code).toBe(0);
    expect(existsSync(path.join(dataDir, "tenants", tenant.id))).toBe(false);
    const operations = await createStrataClient(daemon.apiUrl).operations.list.query({ tenantId: tenant.id });
    expect(operations.map((o) => [o.kind, o.actor, o.result])).toEqual([
      ["tenant.delete", "cli", "ok"],
      ["tenant.create", "cli", "error"],
      ["tenant.create", "cli", "ok"],
    ]);
    expect(operations[1].error).toMatch(/already exists/);
    // the CLI shows the same trail, newest first, and by name for a tenant that has one
    const trail = await runCli(["operations", "--tenant", tenant.id], env);
    expect(trail.code, trail.stderr).toBe(0);
    const rows = trail.stdout.trim().split("\n").slice(1);
    expect(rows.map((r) => r.split(/\s+/).slice(2, 4).concat(r.split(/\s+/)[5]))).toEqual([
      ["tenant.delete", "cli", "ok"],
      ["tenant.create", "cli", "error"],
      ["tenant.create", "cli", "ok"],
    ]);
    expect(rows[1]).toMatch(/CONFLICT|already exists/);
    const all = JSON.parse((await runCli(["operations", "--limit", "2", "--json"], env)).stdout);
    expect(all.map((o: { kind: string }) => o.kind)).toEqual(["tenant.delete", "tenant.delete"]);
    expect((await runCli(["operations", "--limit", "0"], env)).code).toBe(2);
    const down = await runCli(["status"], { STRATA_API: "http://127.0.0.1:1" });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot reach the pageserver/);
  });

  it("serves Prometheus metrics including the tenant count", async () => {
    const text = await (await fetch(`${daemon.apiUrl}/metrics`)).text();
    expect(text).toMatch(/^strata_tenants \d+$/m);
    expect(text).toMatch(/strata_http_requests_total\{/);
    // the redo workers start with the pageserver: one per core up to 4 (none on one core)
    const cores = os.availableParallelism();
    expect(text).toMatch(new RegExp(`^strata_redo_workers ${cores < 2 ? 0 : Math.min(4, cores)}$`, "m"));
    expect(text).toMatch(/^strata_redo_worker_pages \d+$/m);
    expect(text).toMatch(/^strata_redo_worker_failed 0$/m);
  });

  it("answers the page service handshake and rejects unknown commands without dropping the connection", async () => {
    const socket = net.connect(daemon.pgPort, "127.0.0.1");
    const received: Buffer[] = [];
    socket.on("data", (d) => received.push(d));
    await new Promise((r) => socket.once("connect", r));
    const params = Buffer.from("user\0postgres\0\0");
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8 + params.length, 0);
    startup.writeInt32BE(196608, 4);
    socket.write(Buffer.concat([startup, params]));
    const query = Buffer.from("frobnicate 1\0");
    const head = Buffer.alloc(5);
    head.write("Q");
    head.writeInt32BE(query.length + 4, 1);
    socket.write(Buffer.concat([head, query]));
    await new Promise((r) => setTimeout(r, 300));
    const all = Buffer.concat(received).toString("latin1");
    expect(all).toContain("frobnicate");
    expect(all.endsWith("Z\0\0\0\x05I")).toBe(true);
    socket.destroy();
  });

  it("refuses a second daemon on the same data directory", async () => {
    await expect(startDaemon(dataDir)).rejects.toThrow(/in use by another pageserver/);
  });

  it("refuses to start with a redo worker count that is not a whole number", async () => {
    const other = makeDataDir();
    try {
      await expect(startDaemon(other, { STRATA_REDO_WORKERS: "lots" })).rejects.toThrow(/STRATA_REDO_WORKERS must be a whole number \(0 for none\), not "lots"/);
      await expect(startDaemon(other, { STRATA_REDO_WORKERS: "-1" })).rejects.toThrow(/STRATA_REDO_WORKERS must be a whole number/);
    } finally {
      removeDataDir(other);
    }
  });
});

describe("tenant creation crash safety", () => {
  it("rolls back a create that crashed between the storage and metadata steps, and nothing is half-created", async () => {
    const dataDir = makeDataDir();
    try {
      const crashing = await startDaemon(dataDir, { STRATA_FAILPOINTS: "tenant-create-after-storage=exit" });
      const id = "cc".repeat(16);
      await expect(createStrataClient(crashing.apiUrl).tenants.create.mutate({ id })).rejects.toThrow();
      expect(await crashing.stop()).not.toBe(0);
      // the crash left the storage directory behind
      expect(existsSync(path.join(dataDir, "tenants", id))).toBe(true);

      const restarted = await startDaemon(dataDir);
      try {
        const client = createStrataClient(restarted.apiUrl);
        expect((await client.tenants.list.query()).map((t) => t.id)).not.toContain(id);
        expect(existsSync(path.join(dataDir, "tenants", id))).toBe(false);
        const again = await client.tenants.create.mutate({ id });
        expect(again.state).toBe("active");
        expect(readdirSync(path.join(dataDir, "tenants"))).toEqual([id]);
      } finally {
        await restarted.stop();
      }
    } finally {
      removeDataDir(dataDir);
    }
  });

  it("recovers after kill -9 of the daemon and keeps committed tenants", async () => {
    const dataDir = makeDataDir();
    try {
      const first = await startDaemon(dataDir);
      const created = await createStrataClient(first.apiUrl).tenants.create.mutate({});
      await first.kill9();
      const second = await startDaemon(dataDir);
      try {
        const tenant = await createStrataClient(second.apiUrl).timelines.list.query({ tenantId: created.id });
        expect(tenant[0].attached).toBe(true);
      } finally {
        await second.stop();
      }
    } finally {
      removeDataDir(dataDir);
    }
  });
});
