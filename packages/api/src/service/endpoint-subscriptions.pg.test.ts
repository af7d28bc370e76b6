// A branch of a logical replication subscriber: the subscription it inherits must not apply from
// the publisher's slot, which still serves the subscriber the branch was made from.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { mayHaveSubscriptions, parseLsn } from "@strata/core";
import { PgCluster } from "@strata/core/testing";
import { servicesFollowing, type ServicesFixture } from "./testutil.ts";

async function query<T>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end();
  }
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("an endpoint on a branch of a logical replication subscriber", () => {
  let publisher: PgCluster;
  let subscriber: PgCluster;
  let services: ServicesFixture;

  beforeAll(async () => {
    publisher = await PgCluster.start({ settings: { wal_level: "logical" } });
    await publisher.script("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 'initial' FROM generate_series(1, 100) g; CREATE PUBLICATION pub FOR TABLE items");
    subscriber = await PgCluster.start();
    await subscriber.sql("CREATE TABLE items (id int PRIMARY KEY, v text)");
    await subscriber.sql(`CREATE SUBSCRIPTION sub CONNECTION '${publisher.connectionString()}' PUBLICATION pub`);
    await until("the initial copy", async () => (await subscriber.sql<{ n: number }>("SELECT count(*)::int AS n FROM items"))[0].n === 100);
    services = await servicesFollowing(subscriber.connectionString());
  }, 120_000);

  afterAll(async () => {
    await services?.close();
    await subscriber?.stop();
    await publisher?.stop();
  });

  it("disables and detaches the inherited subscription at the first start, and the subscriber keeps replicating", async () => {
    const { db, manager, branches, endpoints, tenantId } = services;
    const timeline = (await db.timeline.findFirst({ where: { tenantId } }))!;
    const [{ lsn }] = await subscriber.sql<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn");
    await manager.waitForLsn(tenantId, timeline.id, parseLsn(lsn), 60_000);
    const copy = await branches.create({ tenantId, name: "copy" });
    expect(await mayHaveSubscriptions(manager.get(tenantId, copy.id)!.reader, parseLsn(copy.ancestorLsn!))).toBe(true);
    const endpoint = await endpoints.start({ tenantId, branch: "copy" });
    expect(endpoint.detachedSubscriptions).toEqual(["postgres.sub"]);
    const url = endpoint.connectionString!;
    expect(await query(url, "SELECT subenabled, subslotname FROM pg_subscription")).toEqual([{ subenabled: false, subslotname: null }]);
    // it runs with its own settings again (the workers were off only while detaching)
    expect(await query(url, "SHOW max_logical_replication_workers")).toEqual([{ max_logical_replication_workers: "4" }]);
    expect(await query(url, "SELECT count(*)::int AS n FROM items")).toEqual([{ n: 100 }]);

    // the publisher's slot still serves the original subscriber, which gets new rows; the branch does not
    await publisher.sql("INSERT INTO items SELECT g, 'later' FROM generate_series(101, 150) g");
    await until("the subscriber to apply the new rows", async () => (await subscriber.sql<{ n: number }>("SELECT count(*)::int AS n FROM items"))[0].n === 150);
    expect(await publisher.sql("SELECT slot_name, active FROM pg_replication_slots")).toEqual([{ slot_name: "sub", active: true }]);
    expect(await query(url, "SELECT count(*)::int AS n FROM items")).toEqual([{ n: 100 }]);

    // a subscription made on the branch itself is the branch's own: it survives a restart
    await publisher.sql("SELECT pg_create_logical_replication_slot('branch_sub', 'pgoutput')");
    await query(url, `CREATE TABLE mine (id int PRIMARY KEY, v text)`);
    await publisher.script("CREATE TABLE mine (id int PRIMARY KEY, v text); INSERT INTO mine VALUES (1, 'a'); CREATE PUBLICATION pub_mine FOR TABLE mine");
    await query(url, `CREATE SUBSCRIPTION branch_sub CONNECTION '${publisher.connectionString()}' PUBLICATION pub_mine WITH (create_slot = false)`);
    await until("the branch's own subscription to copy", async () => (await query<{ n: number }>(url, "SELECT count(*)::int AS n FROM mine"))[0].n === 1);
    await endpoints.stop({ tenantId, branch: "copy" });
    const again = await endpoints.start({ tenantId, branch: "copy" });
    expect(again.detachedSubscriptions).toBeUndefined();
    expect(await query(again.connectionString!, "SELECT subname, subenabled FROM pg_subscription ORDER BY 1")).toEqual([
      { subname: "branch_sub", subenabled: true },
      { subname: "sub", subenabled: false },
    ]);
    await publisher.sql("INSERT INTO mine VALUES (2, 'b')");
    await until("the branch's own subscription to apply", async () => (await query<{ n: number }>(again.connectionString!, "SELECT count(*)::int AS n FROM mine"))[0].n === 2);
    await endpoints.stop({ tenantId, branch: "copy" });
  }, 180_000);
});
