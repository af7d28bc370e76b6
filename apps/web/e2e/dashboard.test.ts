// Browser e2e for the dashboard: a real pageserver and `next start` on free loopback ports,
// driven through Debian's chromium with playwright-core. Any browser console error or page
// error fails the test.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { buildWebIfNeeded, CHROMIUM_ARGS, freePort, startPageserver, startWeb, stopService, type Service } from "./harness";

const UI_TIMEOUT_MS = 30_000;
/** may include a `next build` on a slow 2-core machine */
const BEFORE_ALL_TIMEOUT_MS = 420_000;

let dataDir: string;
let pageserver: Service | undefined;
let web: Service | undefined;
let browser: Browser | undefined;
let apiUrl: string;
let webUrl: string;

beforeAll(async () => {
  await buildWebIfNeeded();
  dataDir = mkdtempSync(path.join(tmpdir(), "strata-web-e2e-"));
  ({ service: pageserver, url: apiUrl } = await startPageserver(dataDir));
  ({ service: web, url: webUrl } = await startWeb(apiUrl));
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS });
}, BEFORE_ALL_TIMEOUT_MS);

afterAll(async () => {
  await browser?.close().catch(() => {});
  await stopService(web);
  await stopService(pageserver);
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A fresh page whose console errors and uncaught exceptions are collected. */
let context: BrowserContext | undefined;
async function openPage(): Promise<{ page: Page; errors: string[] }> {
  context = await browser!.newContext();
  context.setDefaultTimeout(UI_TIMEOUT_MS);
  const page = await context.newPage();
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  return { page, errors };
}

afterEach(async () => {
  await context?.close().catch(() => {});
  context = undefined;
});

async function pageserverTenantIds(): Promise<string[]> {
  const res = await fetch(`${apiUrl}/trpc/tenants.list`);
  const body = (await res.json()) as { result: { data: Array<{ id: string }> } };
  return body.result.data.map((t) => t.id);
}

describe("dashboard", () => {
  test("creates a named tenant, shows its main timeline, and deletes it", async () => {
    const { page, errors } = await openPage();
    const tenantId = randomBytes(16).toString("hex");

    await page.goto(`${webUrl}/`);
    await page.locator('[data-testid="pageserver-status"][data-state="up"]').waitFor();
    await expect(page.locator('[data-testid="pageserver-status"]').textContent()).resolves.toMatch(/pageserver up.*v\d+\.\d+\.\d+.*up \d+/);

    // create through the form, with an explicit id and a name
    const name = `web-e2e-${tenantId.slice(0, 6)}`;
    await page.locator('input[name="tenantId"]').fill(tenantId);
    await page.locator('input[name="tenantName"]').fill(name);
    await page.getByRole("button", { name: "Create tenant" }).click();
    await page.locator('[data-testid="create-tenant-result"]').filter({ hasText: tenantId }).filter({ hasText: name }).waitFor();
    const row = page.locator(`[data-testid="tenant-row"][data-tenant-id="${tenantId}"]`);
    await row.waitFor();
    expect(await row.locator('[data-testid="tenant-name"]').innerText()).toBe(name);
    expect(await pageserverTenantIds()).toContain(tenantId);

    // the same name again (another id): CONFLICT inline, naming it
    await page.locator('input[name="tenantName"]').fill(name);
    await page.getByRole("button", { name: "Create tenant" }).click();
    const nameTaken = page.locator('[data-testid="create-tenant-form"] [role="alert"]').filter({ hasText: name });
    await nameTaken.waitFor();
    expect(await nameTaken.textContent()).toMatch(/CONFLICT|already exists/);
    await page.locator('input[name="tenantName"]').fill("");

    // the same id again: the API's CONFLICT is shown inline
    await page.locator('input[name="tenantId"]').fill(tenantId);
    await page.getByRole("button", { name: "Create tenant" }).click();
    const conflict = page.locator('[data-testid="create-tenant-form"] [role="alert"]');
    await conflict.waitFor();
    expect(await conflict.textContent()).toContain("CONFLICT");

    // a primary to follow that does not answer: the connection error is shown inline, the form
    // keeps the URL for another try, and no tenant is left behind
    const tenantsBefore = await pageserverTenantIds();
    const closedPort = await freePort();
    await page.locator('input[name="tenantId"]').fill("");
    await page.locator('input[name="fromPrimary"]').fill(`postgresql://postgres@127.0.0.1:${closedPort}/postgres`);
    await page.getByRole("button", { name: "Create tenant" }).click();
    const unreachable = page.locator('[data-testid="create-tenant-form"] [role="alert"]').filter({ hasText: `127.0.0.1:${closedPort}` });
    await unreachable.waitFor();
    expect(await unreachable.textContent()).toContain("connection refused");
    expect(await page.locator('input[name="fromPrimary"]').inputValue()).toContain(String(closedPort));
    expect(await pageserverTenantIds()).toEqual(tenantsBefore);
    await page.locator('input[name="fromPrimary"]').fill("");

    // the tenant page lists the main timeline with its LSNs
    await row.getByRole("link").click();
    await page.waitForURL(`${webUrl}/tenants/${tenantId}`);
    expect(await page.locator('[data-testid="tenant-title-name"]').innerText()).toBe(name);
    const main = page.locator('[data-testid="timeline-row"][data-timeline-name="main"]');
    await main.waitFor();
    expect(await main.textContent()).toMatch(/[0-9A-F]+\/[0-9A-F]+/);
    // the branch tree: one xyflow node for main, no edges yet
    await page.locator('[data-testid="branch-tree"] .react-flow__node [data-testid="branch-node"][data-timeline-name="main"]').waitFor();
    expect(await page.locator('[data-testid="branch-tree"] .react-flow__edge').count()).toBe(0);
    // the compact LSN chart of the main timeline: samples, or a clear empty state (no primary here)
    await page.locator('[data-testid="lsn-chart"]:is([data-state="ready"], [data-state="empty"])').waitFor();

    // back to the list, delete with confirmation
    await page.locator(".site-nav").getByRole("link", { name: "Tenants" }).click();
    await row.waitFor();
    await row.getByRole("button", { name: "Delete" }).click();
    await row.getByRole("button", { name: "Yes, delete" }).click();
    await row.waitFor({ state: "detached" });
    expect(await pageserverTenantIds()).not.toContain(tenantId);

    expect(errors).toEqual([]);
  });

  test("shows the pageserver as down, with a readable message, when it stops", async () => {
    await stopService(pageserver);
    const { page, errors } = await openPage();

    await page.goto(`${webUrl}/`);
    const status = page.locator('[data-testid="pageserver-status"][data-state="down"]');
    await status.waitFor();
    const statusText = await status.textContent();
    expect(statusText).toContain("pageserver down");
    expect(statusText).toContain(`unreachable at ${apiUrl}`);

    const notice = page.locator("main [role=alert]");
    await notice.waitFor();
    expect(await notice.textContent()).toMatch(/Cannot load tenants\..*unreachable/);

    // a tenant page degrades the same way
    await page.goto(`${webUrl}/tenants/${randomBytes(16).toString("hex")}`);
    await page.locator('[data-testid="pageserver-status"][data-state="down"]').waitFor();
    await page.locator("main [role=alert]").filter({ hasText: "unreachable" }).waitFor();

    expect(errors).toEqual([]);
  });
});
