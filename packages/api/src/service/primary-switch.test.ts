// The order and the refusals of a primary switch, against a real metadata database. The
// pageserver side (TenantManager) is a stand-in that records what it is asked: the switch itself,
// with a real primary, standby and promotion, is tested in apps/pageserver/src/ingest.test.ts.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { TenantManager } from "@strata/core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { applyMigrations, defaultDatabaseUrl, openDatabase, type Database } from "../db.ts";
import { ConflictError, InvalidInputError, PrimaryRequestError } from "../errors.ts";
import { switchPrimary } from "./primary-switch.ts";

const TENANT = "aa".repeat(16);
const MAIN = "ab".repeat(16);
const BRANCH = "ac".repeat(16);
const OTHER_TENANT = "ba".repeat(16);
const OTHER_MAIN = "bb".repeat(16);
const OLD = "postgresql://postgres@10.0.0.1:5432/postgres";
const NEW = "postgresql://postgres:secret@10.0.0.2:5432/postgres";

/** What the stand-in manager was asked, in order; `prepare` decides how preparing the server ends. */
function standInManager(prepare: () => Promise<"created" | "exists">) {
  const calls: string[] = [];
  const manager = {
    get: () => ({ store: { readMarkers: async () => ({ lastRecordLsn: 0x3000028n }) } }),
    preparePrimary: async (_t: string, _tl: string, url: string, slot: string) => {
      calls.push(`prepare ${url} ${slot}`);
      return prepare();
    },
    switchReceiver: async (_t: string, _tl: string, url: string, slot: string) => void calls.push(`switch ${url} ${slot}`),
    releasePrimarySlot: async (_t: string, _tl: string, url: string, slot: string) => {
      calls.push(`release ${url} ${slot}`);
      return "dropped" as const;
    },
  };
  return { manager: manager as unknown as TenantManager, calls };
}

describe("switching a timeline to another primary", () => {
  let dir: string;
  let db: Database;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "strata-switch-"));
    await applyMigrations(defaultDatabaseUrl(dir));
    db = openDatabase(defaultDatabaseUrl(dir));
  });
  afterAll(async () => {
    await db?.$disconnect();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await db.endpoint.deleteMany();
    await db.timeline.deleteMany({ where: { parentTimelineId: { not: null } } });
    await db.timeline.deleteMany();
    await db.tenant.deleteMany();
    await db.tenant.create({ data: { id: TENANT, state: "active" } });
    await db.timeline.create({ data: { id: MAIN, tenantId: TENANT, name: "main", primaryUrl: OLD, slotName: "strata_main" } });
    await db.timeline.create({ data: { id: BRANCH, tenantId: TENANT, name: "dev", parentTimelineId: MAIN, ancestorLsn: 0x2000000n } });
    await db.tenant.create({ data: { id: OTHER_TENANT, state: "active" } });
    await db.timeline.create({ data: { id: OTHER_MAIN, tenantId: OTHER_TENANT, name: "main", primaryUrl: OLD, slotName: "strata_other" } });
  });
  const primaryOf = async (id: string) => (await db.timeline.findUnique({ where: { id } }))!;

  it("prepares the new server before it changes the metadata and moves the walreceiver, and drops the old-named slot", async () => {
    const { manager, calls } = standInManager(async () => "created");
    const done = await switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: NEW, slot: "strata_new" });
    expect(calls).toEqual([`prepare ${NEW} strata_new`, `switch ${NEW} strata_new`, `release ${OLD} strata_main`]);
    expect(done).toEqual({ timelineId: MAIN, primary: "postgresql://postgres:***@10.0.0.2:5432/postgres", slot: "strata_new", slotCreated: true, resumeLsn: "0/3000028", warnings: [] });
    expect(await primaryOf(MAIN)).toMatchObject({ primaryUrl: NEW, slotName: "strata_new" });
  });

  it("keeps the slot name by default and warns instead of dropping a slot of that name", async () => {
    const { manager, calls } = standInManager(async () => "exists");
    const done = await switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: NEW });
    expect(calls).toEqual([`prepare ${NEW} strata_main`, `switch ${NEW} strata_main`]);
    expect(done.slotCreated).toBe(false);
    expect(done.warnings).toEqual([expect.stringMatching(/if postgresql:\/\/postgres@10\.0\.0\.1:5432\/postgres comes back as another server, drop replication slot "strata_main" there/)]);
  });

  it("changes nothing when the new server is refused", async () => {
    const { manager, calls } = standInManager(async () => {
      throw new Error("it is another database system");
    });
    const refused = switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: NEW });
    await expect(refused).rejects.toThrow(PrimaryRequestError);
    await expect(refused).rejects.toThrow(/cannot follow postgresql:\/\/postgres:\*\*\*@10\.0\.0\.2:5432\/postgres: it is another database system/);
    expect(calls).toEqual([`prepare ${NEW} strata_main`]);
    expect(await primaryOf(MAIN)).toMatchObject({ primaryUrl: OLD, slotName: "strata_main" });
  });

  it("refuses a branch, a timeline fed by its endpoint, a slot another timeline uses and a bad URL, before asking the pageserver anything", async () => {
    const { manager, calls } = standInManager(async () => "created");
    await expect(switchPrimary(db, manager, { tenantId: TENANT, timelineId: BRANCH, primary: NEW })).rejects.toThrow(InvalidInputError);
    await expect(switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: NEW, slot: "strata_other" })).rejects.toThrow(ConflictError);
    await expect(switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: "not a url" })).rejects.toThrow(InvalidInputError);
    await db.endpoint.create({ data: { id: "ad".repeat(16), tenantId: TENANT, timelineId: MAIN, state: "running" } });
    await expect(switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: NEW })).rejects.toThrow(/takes its WAL from its running endpoint/);
    expect(calls).toEqual([]);
    expect(await primaryOf(MAIN)).toMatchObject({ primaryUrl: OLD, slotName: "strata_main" });
  });

  it("refuses a second switch of the same timeline while one runs", async () => {
    let release!: () => void;
    const gate = new Promise<"exists">((resolve) => (release = () => resolve("exists")));
    const { manager, calls } = standInManager(() => gate);
    const first = switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: NEW });
    while (calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    // refused at once, not queued behind the first
    const second = switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: OLD });
    second.catch(() => {});
    const waited = new Promise((r) => setTimeout(() => r("still running after 1 s"), 1000));
    await expect(Promise.race([second, waited])).rejects.toThrow(/already being switched/);
    release();
    await first;
    expect(calls).toEqual([`prepare ${NEW} strata_main`, `switch ${NEW} strata_main`]);
    expect(await primaryOf(MAIN)).toMatchObject({ primaryUrl: NEW });
    // and once it is done, the timeline can be switched again
    const { manager: again } = standInManager(async () => "exists");
    await switchPrimary(db, again, { tenantId: TENANT, timelineId: MAIN, primary: OLD });
    expect(await primaryOf(MAIN)).toMatchObject({ primaryUrl: OLD });
  });

  it("drops a slot it created when the metadata update then fails", async () => {
    const { manager, calls } = standInManager(async () => {
      // another timeline takes the slot name between the check and the update
      await db.timeline.update({ where: { id: OTHER_MAIN }, data: { slotName: "strata_new" } });
      return "created";
    });
    await expect(switchPrimary(db, manager, { tenantId: TENANT, timelineId: MAIN, primary: NEW, slot: "strata_new" })).rejects.toThrow(ConflictError);
    expect(calls).toEqual([`prepare ${NEW} strata_new`, `release ${NEW} strata_new`]);
    expect(await primaryOf(MAIN)).toMatchObject({ primaryUrl: OLD, slotName: "strata_main" });
  });
});
