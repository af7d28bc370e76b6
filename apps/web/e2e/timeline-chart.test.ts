// Browser e2e for the timeline page's live LSN chart: a real PostgreSQL 15 primary under pgbench,
// a tenant that follows it, the pageserver and `next start` on free loopback ports, driven
// through Debian's chromium. The chart must show real, growing points while pgbench runs, with
// no console errors or page errors. Then the page compacts the timeline and moves it to another
// primary (a refusal first, then the primary itself).
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createStrataClient } from "@strata/api/client";
import { PgCluster } from "@strata/core/testing";
import { chromium, type Browser, type BrowserContext } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { buildWebIfNeeded, CHROMIUM_ARGS, startPageserver, startWeb, stopService, type Service } from "./harness";

const UI_TIMEOUT_MS = 20_000;
/** may include a `next build` on a slow 2-core machine */
const BEFORE_ALL_TIMEOUT_MS = 420_000;
/** each pgbench run is short; runs follow each other until the page checks are done */
const PGBENCH_RUN_SECONDS = 2;
const SCREENSHOT = "/tmp/dash-timeline.png";

let cluster: PgCluster | undefined;
let dataDir: string | undefined;
let pageserver: Service | undefined;
let web: Service | undefined;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
let load: PgbenchLoad | undefined;
let apiUrl: string;
let webUrl: string;

beforeAll(async () => {
  const build = buildWebIfNeeded();
  cluster = await PgCluster.start({ settings: { wal_keep_size: "1GB" } });
  await cluster.pgbench(["-i", "-s", "1", "-q"]);
  await build;
  dataDir = mkdtempSync(path.join(tmpdir(), "strata-web-e2e-tl-"));
  // no automatic compaction: the test compacts from the page and checks what that pass did
  ({ service: pageserver, url: apiUrl } = await startPageserver(dataDir, { STRATA_COMPACTION_MIN_RECORDS: "0" }));
  ({ service: web, url: webUrl } = await startWeb(apiUrl));
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS });
}, BEFORE_ALL_TIMEOUT_MS);

afterAll(async () => {
  load?.abort();
  await context?.close().catch(() => {});
  await browser?.close().catch(() => {});
  await stopService(web);
  await stopService(pageserver);
  await cluster?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/**
 * pgbench against the primary until `stop()`: consecutive short runs rather than one long -T,
 * so the load lasts as long as the checks need however slow the machine is (a fixed -T once
 * ended before the page had drawn its first samples), and each run's exit code is still checked.
 */
interface PgbenchLoad {
  running(): boolean;
  /** ends the load after the current run; resolves with the failed run's output, or "" */
  stop(): Promise<string>;
  abort(): void;
}

function startPgbenchLoad(primary: PgCluster): PgbenchLoad {
  let wanted = true;
  let aborted = false;
  let current: ChildProcess | undefined;
  let failure = "";
  const loop = (async () => {
    while (wanted && !failure) {
      const child = primary.spawnClient("pgbench", ["-T", String(PGBENCH_RUN_SECONDS), "-c", "2", "postgres"]);
      current = child;
      let output = "";
      child.stdout?.on("data", (c: Buffer) => (output += c.toString()));
      child.stderr?.on("data", (c: Buffer) => (output += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
      current = undefined;
      if (code !== 0 && !aborted) failure = `pgbench exited with ${code}: ${output}`;
    }
  })();
  return {
    running: () => wanted && !failure,
    stop: async () => {
      wanted = false;
      await loop;
      return failure;
    },
    abort: () => {
      wanted = false;
      aborted = true;
      current?.kill("SIGTERM");
    },
  };
}

/** "16/B374D848" → byte position */
function lsnToBigInt(lsn: string): bigint {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(lsn)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

describe("timeline page", () => {
  test("charts live LSN progress while pgbench runs against the primary, then compacts and changes the primary from the page", async () => {
    const client = createStrataClient(apiUrl, "web-e2e");
    context = await browser!.newContext({ viewport: { width: 1280, height: 1100 } });
    context.setDefaultTimeout(UI_TIMEOUT_MS);
    const page = await context.newPage();
    const errors: string[] = [];
    page.on("console", (msg) => {
      if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
    });
    page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));

    // the tenant is created in the dashboard's form: the primary imported and followed through a
    // slot named there
    await page.goto(`${webUrl}/`);
    const form = page.locator('[data-testid="create-tenant-form"]');
    await form.locator('input[name="fromPrimary"]').fill(cluster!.connectionString());
    await form.locator('input[name="slot"]').fill("web_e2e_follow");
    await form.locator('button[type="submit"]').click();
    const created = form.locator('[data-testid="create-tenant-result"]');
    await created.waitFor({ timeout: 120_000 });
    expect(await created.innerText()).toContain("imported from the primary and following it");
    const tenantId = (await created.locator("a").getAttribute("href"))!.split("/").pop()!;
    const tenant = await client.tenants.get.query({ id: tenantId });
    const timeline = tenant.timelines[0];
    expect(timeline).toBeDefined();
    const slots = await cluster!.sql<{ active: boolean }>("SELECT active FROM pg_replication_slots WHERE slot_name = 'web_e2e_follow'");
    expect(slots).toHaveLength(1);

    // pgbench in the background until the live checks are done
    load = startPgbenchLoad(cluster!);
    const pgbenchRunning = () => load!.running();

    await page.goto(`${webUrl}/tenants/${tenant.id}/timelines/${timeline!.id}`);
    await page.locator('[data-testid="timeline-header"]').filter({ hasText: timeline!.id }).waitFor();

    // at least 3 samples drawn
    const chart = page.locator('[data-testid="lsn-chart"]');
    await page.waitForFunction(() => Number(document.querySelector('[data-testid="lsn-chart"]')?.getAttribute("data-points") ?? 0) >= 3, null, {
      timeout: UI_TIMEOUT_MS,
      polling: 200,
    });
    expect(await chart.getAttribute("data-state")).toBe("ready");

    // last_record_lsn on the page grows between two reads while pgbench runs
    const lastRecord = page.locator('[data-testid="last-record-lsn"]');
    const first = lsnToBigInt(await lastRecord.innerText());
    expect(pgbenchRunning()).toBe(true);
    let second = first;
    const deadline = Date.now() + 6_000;
    while (second <= first && Date.now() < deadline && pgbenchRunning()) {
      await page.waitForTimeout(250);
      second = lsnToBigInt(await lastRecord.innerText());
    }
    expect(second, `last_record_lsn stayed at ${await lastRecord.innerText()} (pgbench running: ${pgbenchRunning()})`).toBeGreaterThan(first);

    // the LSN series are drawn as real SVG paths (a moveto followed by line/curve segments)
    const curves = chart.locator(".recharts-line-curve");
    await expect.poll(() => curves.count(), { timeout: 5_000 }).toBeGreaterThanOrEqual(2);
    const paths = await curves.evaluateAll((els) => els.map((el) => el.getAttribute("d") ?? ""));
    for (const d of paths) expect(d).toMatch(/^M\s*[-\d.e]+[ ,][-\d.e]+\s*[LC]/);
    // primary flush LSN is reported by the walreceiver: three series
    expect(paths.length).toBe(3);
    const points = Number(await chart.getAttribute("data-points"));
    expect(points).toBeGreaterThanOrEqual(3);

    // the numbers panel shows the primary and a lag
    expect(await page.locator('[data-testid="timeline-primary"]').innerText()).toContain("127.0.0.1");
    expect(await page.locator('[data-testid="walreceiver"]').innerText()).toMatch(/streaming|connecting/);
    expect(await page.locator('[data-testid="lag"]').innerText()).toMatch(/\d+(\.\d+)? (B|KiB|MiB|GiB)/);
    // and what the databases hold (pgbench's tables: MiB) and what the timeline stores on disk
    expect(await page.locator('[data-testid="logical-size"]').innerText()).toMatch(/^\d+(\.\d+)? (MiB|GiB)$/);
    expect(await page.locator('[data-testid="physical-size"]').innerText()).toMatch(/^\d+(\.\d+)? (MiB|GiB)$/);

    // hovering shows the tooltip with the LSNs (and must log no errors)
    await chart.locator(".recharts-wrapper").first().hover();
    await chart.locator(".recharts-tooltip-wrapper").first().filter({ hasText: "last_record_lsn" }).waitFor();

    // for a human look at the page mid-run
    expect(pgbenchRunning()).toBe(true);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    expect(await load.stop()).toBe("");

    // compaction on request from the page: pgbench rewrote pages since the import
    await page.goto(`${webUrl}/tenants/${tenant.id}/timelines/${timeline!.id}`);
    await page.locator('[data-testid="compact-now"]:not([disabled])').click();
    const last = page.locator('[data-testid="compaction-last"]');
    await last.filter({ hasText: /block images/ }).waitFor();
    const images = Number((await last.innerText()).match(/: ([\d,]+) block images/)![1].replace(/,/g, ""));
    const { compaction } = await client.timelines.get.query({ tenantId: tenant.id, timelineId: timeline!.id });
    expect(compaction).not.toBeNull();
    expect(compaction!.images).toBe(images);
    expect(images).toBeGreaterThan(0);
    expect(compaction!.movedVersions).toBeGreaterThan(images);
    await page.locator('[data-testid="timeline-header"]').screenshot({ path: "/tmp/dash-compaction.png" });

    // failover from the page: a server that cannot be followed is refused and nothing changes;
    // the primary itself (as after a switchover back) is taken, its slot found there
    const setPrimary = page.locator('[data-testid="set-primary"]');
    await setPrimary.getByRole("button", { name: "Change primary…" }).click();
    const primaryForm = setPrimary.locator('[data-testid="set-primary-form"]');
    await primaryForm.locator('input[name="primary"]').fill("postgresql://postgres@127.0.0.1:1/postgres");
    await primaryForm.locator('button[type="submit"]').click();
    const refused = setPrimary.locator('[role="alert"]');
    await refused.waitFor();
    expect(await refused.textContent()).toMatch(/cannot follow postgresql:\/\/postgres@127\.0\.0\.1:1\/postgres/);
    expect(await refused.textContent()).toContain("BAD_REQUEST");
    expect(await page.locator('[data-testid="timeline-primary"]').innerText()).toContain(`127.0.0.1:${cluster!.port}`);
    await primaryForm.locator('input[name="primary"]').fill(cluster!.connectionString());
    await primaryForm.locator('button[type="submit"]').click();
    const switched = setPrimary.locator('[data-testid="set-primary-result"]');
    await switched.waitFor();
    expect((await switched.innerText()).replace(/\s+/g, " ")).toMatch(/Following postgresql:\/\/postgres@127\.0\.0\.1:\d+\/postgres through slot web_e2e_follow from [0-9A-F]+\/[0-9A-F]+ ?\./);
    await page.locator('[data-testid="walreceiver"]').filter({ hasText: "streaming" }).waitFor();
    const [{ lsn: afterSwitch }] = await cluster!.sql<{ lsn: string }>("SELECT pg_current_wal_flush_lsn()::text AS lsn");
    await client.timelines.waitLsn.mutate({ tenantId: tenant.id, timelineId: timeline!.id, lsn: afterSwitch, timeoutSeconds: 30 });

    // the tenant page links to the timeline and shows the compact chart with the same series
    await page.goto(`${webUrl}/tenants/${tenant.id}`);
    const link = page.locator(`[data-testid="timeline-row"][data-timeline-id="${timeline!.id}"] [data-testid="timeline-link"]`);
    expect(await link.getAttribute("href")).toBe(`/tenants/${tenant.id}/timelines/${timeline!.id}`);
    await page.locator('[data-testid="lsn-chart"][data-state="ready"] .recharts-line-curve').first().waitFor();
    await page.screenshot({ path: "/tmp/dash-tenant.png", fullPage: true });

    expect(errors).toEqual([]);
  });
});
