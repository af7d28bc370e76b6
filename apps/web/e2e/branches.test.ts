// Browser e2e for branches and endpoints: a real PostgreSQL 15 primary with a small table, a
// tenant that follows it, the pageserver and `next start` on free loopback ports, driven through
// Debian's chromium. Creates a branch "dev" through the form, checks it in the xyflow tree,
// starts an endpoint on it from the browser, queries the table through the endpoint's
// connection string, and stops it from the browser, then deletes the branch from its page (refused
// first while it has a branch of its own). Any console error or page error fails it.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createStrataClient } from "@strata/api/client";
import { PgCluster } from "@strata/core/testing";
import pg from "pg";
import { chromium, type Browser, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { buildWebIfNeeded, CHROMIUM_ARGS, startPageserver, startWeb, stopService, type Service } from "./harness";

const UI_TIMEOUT_MS = 20_000;
/** starting an endpoint builds a data dir from a full backup and starts PostgreSQL */
const ENDPOINT_TIMEOUT_MS = 40_000;
/** may include a `next build` on a slow 2-core machine */
const BEFORE_ALL_TIMEOUT_MS = 420_000;
const SCREENSHOT = "/tmp/dash-branches.png";

let cluster: PgCluster | undefined;
let dataDir: string | undefined;
let pageserver: Service | undefined;
let web: Service | undefined;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
let apiUrl: string;
let webUrl: string;
let tenantId: string | undefined;

beforeAll(async () => {
  const build = buildWebIfNeeded();
  cluster = await PgCluster.start({ settings: { wal_keep_size: "256MB" } });
  await cluster.sql("CREATE TABLE items AS SELECT g AS id FROM generate_series(1,100) g");
  await build;
  dataDir = mkdtempSync(path.join(tmpdir(), "strata-web-e2e-br-"));
  ({ service: pageserver, url: apiUrl } = await startPageserver(dataDir));
  ({ service: web, url: webUrl } = await startWeb(apiUrl));
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS });
}, BEFORE_ALL_TIMEOUT_MS);

afterAll(async () => {
  await context?.close().catch(() => {});
  await browser?.close().catch(() => {});
  // endpoints are PostgreSQL processes run by the pageserver: stop them through the API first
  if (pageserver && tenantId && pageserver.child.exitCode === null) {
    const client = createStrataClient(apiUrl, "web-e2e");
    const endpoints = await client.endpoints.list.query({ tenantId }).catch(() => []);
    for (const ep of endpoints) {
      if (ep.state === "running") await client.endpoints.stop.mutate({ tenantId, branch: ep.timelineId }).catch((err) => console.warn(`endpoints.stop: ${err}`));
    }
  }
  await stopService(web);
  await stopService(pageserver);
  await cluster?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}, 120_000);

describe("branches and endpoints", () => {
  test("creates a branch in the form, shows it in the tree, starts, queries and stops an endpoint on it", async () => {
    const client = createStrataClient(apiUrl, "web-e2e");
    const tenant = await client.tenants.create.mutate({ fromPrimary: cluster!.connectionString() });
    tenantId = tenant.id;
    const main = tenant.timelines[0]!;

    context = await browser!.newContext({ viewport: { width: 1280, height: 1000 } });
    context.setDefaultTimeout(UI_TIMEOUT_MS);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
    });
    page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));

    await page.goto(`${webUrl}/tenants/${tenant.id}`);
    const tree = page.locator('[data-testid="branch-tree"]');
    await tree.locator('.react-flow__node [data-testid="branch-node"][data-timeline-name="main"]').waitFor();

    // main follows the primary: no Start button for it
    const mainRow = page.locator('[data-testid="endpoint-row"][data-branch="main"]');
    await mainRow.waitFor();
    expect(await mainRow.getByRole("button", { name: "Start" }).count()).toBe(0);

    // create "dev" through the form (parent defaults to main, latest LSN)
    const form = page.locator('[data-testid="create-branch-form"]');
    expect(await form.locator('select[name="parentTimelineId"]').inputValue()).toBe(main.id);
    await form.locator('input[name="branchName"]').fill("dev");
    await form.getByRole("button", { name: "Create branch" }).click();
    const result = form.locator('[data-testid="create-branch-result"][data-branch-name="dev"]');
    await result.waitFor();
    const branchLsn = (await result.locator('[data-testid="create-branch-lsn"]').innerText()).trim();
    expect(branchLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);

    const branches = await client.branches.list.query({ tenantId: tenant.id });
    const dev = branches.find((b) => b.name === "dev");
    expect(dev?.parentTimelineId).toBe(main.id);
    expect(dev?.ancestorLsn).toBe(branchLsn);

    // the tree: a node for dev and an edge main → dev labelled with the branch LSN
    await tree.locator('.react-flow__node [data-testid="branch-node"][data-timeline-name="dev"]').waitFor();
    const edge = tree.locator(`.react-flow__edge[data-id="${main.id}->${dev!.id}"]`);
    await edge.waitFor();
    expect(await tree.locator(".react-flow__edge").count()).toBe(1);
    expect(await edge.locator(".react-flow__edge-text").textContent()).toBe(branchLsn);

    // the same name again: CONFLICT inline
    await form.locator('input[name="branchName"]').fill("dev");
    await form.getByRole("button", { name: "Create branch" }).click();
    const conflict = form.locator('[role="alert"]');
    await conflict.waitFor();
    expect(await conflict.textContent()).toContain("CONFLICT");

    // start an endpoint on dev from the browser
    const devRow = page.locator('[data-testid="endpoint-row"][data-branch="dev"]');
    // with postgresql.conf settings: a line that is not name=value keeps Start disabled
    await devRow.locator('[data-testid="endpoint-settings-toggle"]').click();
    const settingsInput = page.locator('[data-testid="endpoint-settings-input"]');
    await settingsInput.fill("work_mem");
    await page.locator('[data-testid="endpoint-settings-error"]').waitFor();
    expect(await devRow.getByRole("button", { name: "Start" }).isDisabled()).toBe(true);
    await settingsInput.fill("work_mem=12MB\n\napplication_name=from the dashboard");
    await devRow.getByRole("button", { name: "Start" }).click();
    const conn = devRow.locator('[data-testid="endpoint-connection"]');
    await conn.waitFor({ timeout: ENDPOINT_TIMEOUT_MS });
    expect(await devRow.getAttribute("data-state")).toBe("running");
    expect(await devRow.locator('[data-testid="endpoint-settings"]').innerText()).toContain("work_mem=12MB");
    // its postgres log, on demand
    await devRow.locator('[data-testid="endpoint-log-toggle"]').click();
    await page.locator('[data-testid="endpoint-log"]').filter({ hasText: "database system is ready to accept connections" }).waitFor({ timeout: 10_000 });
    const connectionString = (await conn.innerText()).trim();
    expect(connectionString).toMatch(/^postgresql:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // the branch's data through the endpoint
    const pgClient = new pg.Client({ connectionString });
    await pgClient.connect();
    try {
      const { rows } = await pgClient.query<{ count: string }>("SELECT count(*) FROM items");
      expect(Number(rows[0]!.count)).toBe(100);
      const shown = await pgClient.query<{ work_mem: string; app: string }>("SELECT current_setting('work_mem') AS work_mem, current_setting('application_name') AS app");
      expect(shown.rows[0]).toEqual({ work_mem: "12MB", app: "from the dashboard" });
    } finally {
      await pgClient.end();
    }

    // stop it from the browser
    await devRow.getByRole("button", { name: "Stop" }).click();
    await page.locator('[data-testid="endpoint-row"][data-branch="dev"][data-state="stopped"]').waitFor({ timeout: ENDPOINT_TIMEOUT_MS });
    await devRow.getByRole("button", { name: "Start" }).waitFor();
    expect(await conn.count()).toBe(0);

    // the tenant's recent operations: what was just done from this page, the refused create too
    const operations = page.locator('[data-testid="operation-row"]');
    await expect
      .poll(() => operations.evaluateAll((rows) => rows.map((r) => `${r.getAttribute("data-kind")}:${r.getAttribute("data-result")}`)), { timeout: 10_000 })
      .toEqual(expect.arrayContaining(["endpoint.stop:ok", "endpoint.start:ok", "branch.create:error", "branch.create:ok"]));
    expect(await operations.first().getAttribute("data-kind")).toBe("endpoint.stop");
    expect(await page.locator('[data-testid="operation-row"][data-result="error"]').first().innerText()).toMatch(/already exists/);

    // clicking the dev node opens its timeline page, which has the endpoint panel for dev
    await tree.locator('.react-flow__node [data-testid="branch-node"][data-timeline-name="dev"]').click();
    await page.waitForURL(`${webUrl}/tenants/${tenant.id}/timelines/${dev!.id}`);
    await page.locator('[data-testid="endpoint-row"][data-branch="dev"][data-state="stopped"]').waitFor();

    // delete dev from its page: refused while it has a branch of its own, then done
    await client.branches.create.mutate({ tenantId: tenant.id, name: "dev_child", parentBranch: "dev" });
    const deleteBranch = page.locator('[data-testid="delete-branch"]');
    await deleteBranch.getByRole("button", { name: "Delete branch" }).click();
    await deleteBranch.getByRole("button", { name: "Yes, delete" }).click();
    const refusal = deleteBranch.locator('[role="alert"]');
    await refusal.waitFor();
    expect(await refusal.textContent()).toContain("CONFLICT");
    expect(await refusal.textContent()).toContain("has branches of its own (dev_child)");
    await client.branches.delete.mutate({ tenantId: tenant.id, branch: "dev_child" });
    // the question stays open under the refusal: confirm again
    await deleteBranch.getByRole("button", { name: "Yes, delete" }).click();
    await page.waitForURL(`${webUrl}/tenants/${tenant.id}`);
    await tree.locator('.react-flow__node [data-testid="branch-node"][data-timeline-name="main"]').waitFor();
    await page.locator('[data-testid="endpoint-row"][data-branch="dev"]').waitFor({ state: "detached" });
    expect(await tree.locator('.react-flow__node [data-testid="branch-node"][data-timeline-name="dev"]').count()).toBe(0);
    expect((await client.branches.list.query({ tenantId: tenant.id })).map((b) => b.name)).toEqual(["main"]);

    expect(errors).toEqual([]);
  }, 90_000);

  test("deleting a tenant whose primary is gone shows the replication slot left there until acknowledged", async () => {
    const client = createStrataClient(apiUrl, "web-e2e");
    const gone = await PgCluster.start();
    const tenant = await client.tenants.create.mutate({ fromPrimary: gone.connectionString() });
    await gone.stop();
    const page = await context!.newPage();
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
    await page.goto(`${webUrl}/tenants/${tenant.id}`);
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("button", { name: "Yes, delete" }).click();
    const warnings = page.locator('[data-testid="delete-warnings"]');
    await warnings.waitFor({ timeout: ENDPOINT_TIMEOUT_MS });
    expect(await warnings.textContent()).toMatch(new RegExp(`replication slot "strata_${tenant.id}_\\w+" was not dropped.*pg_drop_replication_slot`));
    expect((await client.tenants.list.query()).map((t) => t.id)).not.toContain(tenant.id);
    await warnings.getByRole("button", { name: "OK" }).click();
    await page.waitForURL(`${webUrl}/`);
    expect(errors).toEqual([]);
  }, 90_000);
});
