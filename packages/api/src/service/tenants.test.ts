import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createTimelineStorage } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { applyMigrations, defaultDatabaseUrl, openDatabase, type Database } from "../db.ts";
import { ConflictError, InvalidInputError, NotFoundError } from "../errors.ts";
import { TenantService } from "./tenants.ts";

function behavesLikeAMetadataStore(name: string, setup: () => Promise<{ url: string; dataDir: string; cleanup: () => Promise<void> }>) {
  describe(`tenant service on ${name}`, () => {
    let env: Awaited<ReturnType<typeof setup>>;
    let db: Database;
    let service: TenantService;
    const activated: string[] = [];
    beforeAll(async () => {
      env = await setup();
      await applyMigrations(env.url);
      db = openDatabase(env.url);
      service = new TenantService(db, env.dataDir, { onTenantActive: async (id) => void activated.push(id) });
    });
    afterAll(async () => {
      await db?.$disconnect();
      await env?.cleanup();
    });

    it("creates one tenant out of 20 concurrent creates of the same id and starts it only once", async () => {
      const id = "ab".repeat(16);
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => service.create(id)));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      expect(results.filter((r) => r.status === "rejected" && r.reason instanceof ConflictError)).toHaveLength(19);
      expect(activated.filter((a) => a === id)).toHaveLength(1);
      const tenant = await service.get(id);
      expect(tenant.timelines).toHaveLength(1);
      expect(tenant.timelines[0].ancestorLsn).toBe("0/0");
    });

    it("gives a name to one tenant out of 10 concurrent creates with that name, and frees it with the tenant", async () => {
      const ids = Array.from({ length: 10 }, (_, i) => `c${i}`.repeat(16));
      const results = await Promise.allSettled(ids.map((id) => service.create(id, { name: "orders" })));
      const won = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
      expect(won).toHaveLength(1);
      expect(won[0].name).toBe("orders");
      for (const r of results) if (r.status === "rejected") expect(String(r.reason)).toMatch(/a tenant named "orders" already exists/);
      expect(results.filter((r) => r.status === "rejected" && r.reason instanceof ConflictError)).toHaveLength(9);
      // the losers left nothing behind
      for (const id of ids) if (id !== won[0].id) expect(await db.tenant.findUnique({ where: { id } })).toBeNull();
      expect((await service.list()).find((t) => t.id === won[0].id)?.name).toBe("orders");
      expect((await service.get(won[0].id)).name).toBe("orders");
      await expect(service.create(undefined, { name: "ab".repeat(16) })).rejects.toThrow(InvalidInputError);
      await expect(service.create(undefined, { name: "-dash" })).rejects.toThrow(InvalidInputError);
      await service.delete(won[0].id);
      expect((await service.create(undefined, { name: "orders" })).name).toBe("orders");
    });

    it("reports a primary import's progress while the create runs, and nothing before or after", async () => {
      const id = "a1".repeat(16);
      let release!: () => void;
      let reported!: () => void;
      const progressed = new Promise<void>((resolve) => (reported = resolve));
      const importing = new TenantService(db, env.dataDir, {
        importTimeline: async (_tenant, _timeline, _url, _slot, onProgress) => {
          onProgress?.(5 * 1048576, 20 * 1048576);
          reported();
          await new Promise<void>((resolve) => (release = resolve));
        },
      });
      expect(importing.importProgress(id)).toBeNull();
      const created = importing.create(id, { fromPrimary: "postgres://postgres@127.0.0.1:1/postgres" });
      await progressed;
      expect(importing.importProgress(id)).toMatchObject({ bytes: 5 * 1048576, totalBytes: 20 * 1048576 });
      release();
      await created;
      expect(importing.importProgress(id)).toBeNull();
      expect(() => importing.importProgress("nope")).toThrow(InvalidInputError);
    });

    it("rejects malformed ids and unknown tenants with typed errors", async () => {
      await expect(service.create("ABC")).rejects.toBeInstanceOf(InvalidInputError);
      await expect(service.get("cd".repeat(16))).rejects.toBeInstanceOf(NotFoundError);
    });

    it("drops the slot of a primary import a crash interrupted at recovery, and names one it cannot drop", async () => {
      const url = "postgres://postgres@127.0.0.1:1/postgres";
      // a create whose import never returns: the process "crashes" with the rows in place
      let importing = 0;
      const crashing = new TenantService(db, env.dataDir, { importTimeline: () => new Promise(() => void importing++) });
      const ids = ["b1".repeat(16), "b2".repeat(16)];
      for (const id of ids) void crashing.create(id, { fromPrimary: url, slot: `slot_${id.slice(0, 4)}` });
      await expect.poll(() => importing).toBe(2);
      const released: string[][] = [];
      const restarted = new TenantService(db, env.dataDir, {
        releasePrimarySlot: async (tenantId, _timelineId, primaryUrl, slot) => {
          released.push([tenantId, primaryUrl, slot]);
          if (tenantId === ids[1]) throw new Error("connect ECONNREFUSED 127.0.0.1:1");
        },
      });
      const recovery = await restarted.recover();
      expect(released.sort()).toEqual(ids.map((id) => [id, url, `slot_${id.slice(0, 4)}`]));
      expect(recovery.rolledBack.sort()).toEqual(ids);
      expect(recovery.warnings).toHaveLength(1);
      expect(recovery.warnings[0]).toMatch(/replication slot "slot_b2b2" was not dropped .*ECONNREFUSED.*pg_drop_replication_slot\('slot_b2b2'\)/);
      expect(await db.timeline.count({ where: { tenantId: { in: ids } } })).toBe(0);
    });

    it("finishes a branch delete a crash interrupted, or undoes it when the branch has branches of its own", async () => {
      const tenant = await service.create("d1".repeat(16));
      const main = tenant.timelines[0].id;
      const [gone, kept, child] = ["d2", "d3", "d4"].map((x) => x.repeat(16));
      for (const [id, parent] of [[gone, main], [kept, main], [child, kept]]) {
        await db.timeline.create({ data: { id, tenantId: tenant.id, name: `b_${id.slice(0, 2)}`, parentTimelineId: parent, ancestorLsn: 1n, state: "active" } });
        await createTimelineStorage(env.dataDir, tenant.id, id, 1n);
      }
      await db.timeline.updateMany({ where: { id: { in: [gone, kept] } }, data: { state: "deleting" } });
      await service.recover();
      expect(await db.timeline.findUnique({ where: { id: gone } })).toBeNull();
      expect(existsSync(path.join(env.dataDir, "tenants", tenant.id, "timelines", gone))).toBe(false);
      expect((await db.timeline.findUnique({ where: { id: kept } }))?.state).toBe("active");
      expect(existsSync(path.join(env.dataDir, "tenants", tenant.id, "timelines", kept))).toBe(true);
      await db.timeline.delete({ where: { id: child } });
      await db.timeline.delete({ where: { id: kept } });
      await service.delete(tenant.id);
    });

    it("leaves no rows behind when a primary import fails", async () => {
      const id = "c1".repeat(16);
      const failing = new TenantService(db, env.dataDir, { importTimeline: async () => Promise.reject(new Error("no route to primary")) });
      await expect(failing.create(id, { fromPrimary: "postgres://postgres@127.0.0.1:1/postgres" })).rejects.toThrow(/no route to primary/);
      expect(await db.tenant.findUnique({ where: { id } })).toBeNull();
      expect(await db.timeline.count({ where: { tenantId: id } })).toBe(0);
      expect(existsSync(path.join(env.dataDir, "tenants", id))).toBe(false);
    });

    it("rolls back a half-created tenant at recovery and deletes cleanly", async () => {
      const id = "ef".repeat(16);
      await db.tenant.create({ data: { id, state: "creating" } });
      const recovery = await service.recover();
      expect(recovery.rolledBack).toEqual([id]);
      expect(await db.tenant.findUnique({ where: { id } })).toBeNull();
      const created = await service.create(id);
      expect(existsSync(path.join(env.dataDir, "tenants", id))).toBe(true);
      await service.delete(created.id);
      expect(existsSync(path.join(env.dataDir, "tenants", id))).toBe(false);
      expect(await db.timeline.count({ where: { tenantId: id } })).toBe(0);
    });
  });
}

behavesLikeAMetadataStore("embedded SQLite", async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "strata-meta-"));
  return { url: defaultDatabaseUrl(dataDir), dataDir, cleanup: async () => rmSync(dataDir, { recursive: true, force: true }) };
});

behavesLikeAMetadataStore("PostgreSQL 15 (DATABASE_URL=postgres://…)", async () => {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "strata-meta-"));
  const cluster = await PgCluster.start();
  await cluster.sql("CREATE DATABASE strata_meta");
  return {
    url: cluster.connectionString("strata_meta"),
    dataDir,
    cleanup: async () => {
      await cluster.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
});
