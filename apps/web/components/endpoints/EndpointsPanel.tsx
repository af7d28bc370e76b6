"use client";
// Compute endpoints: a stock PostgreSQL 15 running on a branch. One row per branch with its
// latest endpoint (state, port, connection string), a Start button when nothing runs on it and a
// Stop button when it runs. Polled every 2 s; errors from start/stop are shown in the branch's row.
//
// Test hooks: [data-testid="endpoints-panel"]; each row is [data-testid="endpoint-row"] with
// data-branch (name), data-timeline-id and data-state ("none" when the branch never had one);
// the connection string is [data-testid="endpoint-connection"].
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState } from "react";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { Mono } from "@/components/common/Mono";
import { formatTimestamp } from "@/lib/format";
import { useTRPC, type Endpoint } from "@/lib/trpc";

export const ENDPOINTS_POLL_MS = 2_000;
/** lines of an endpoint's postgres log shown */
const LOG_LINES = 200;

/** What the panel needs of a branch; `primary` set means it follows an external primary. */
export interface EndpointBranch {
  id: string;
  name: string;
  primary?: string | null;
}

const ACTIVE = new Set(["starting", "running", "stopping"]);

export function EndpointsPanel({ tenantId, branches, title = "Endpoints" }: { tenantId: string; branches: EndpointBranch[]; title?: string }) {
  const trpc = useTRPC();
  const endpoints = useQuery({ ...trpc.endpoints.list.queryOptions({ tenantId }), refetchInterval: ENDPOINTS_POLL_MS });

  // the newest endpoint of each branch (the list is oldest first)
  const latest = new Map<string, Endpoint>();
  for (const ep of endpoints.data ?? []) latest.set(ep.timelineId, ep);

  return (
    <section className="card" data-testid="endpoints-panel">
      <h2>{title}</h2>
      {endpoints.isError ? <ErrorNotice title="Cannot load endpoints." error={endpoints.error} /> : null}
      {branches.length === 0 ? (
        <p className="empty">No branches.</p>
      ) : endpoints.isPending ? (
        <p className="muted">Loading endpoints…</p>
      ) : (
        <div className="table-scroll">
          <table className="table">
            <thead>
              <tr>
                <th>Branch</th>
                <th>State</th>
                <th>Port</th>
                <th>Connection string</th>
                <th className="actions" />
              </tr>
            </thead>
            <tbody>
              {branches.map((b) => (
                <EndpointRow key={b.id} tenantId={tenantId} branch={b} endpoint={latest.get(b.id)} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function EndpointRow({ tenantId, branch, endpoint }: { tenantId: string; branch: EndpointBranch; endpoint: Endpoint | undefined }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.endpoints.list.queryKey({ tenantId }) });
  const start = useMutation(trpc.endpoints.start.mutationOptions({ onSettled: refresh }));
  const stop = useMutation(trpc.endpoints.stop.mutationOptions({ onSettled: refresh }));

  const [showSettings, setShowSettings] = useState(false);
  const [showLog, setShowLog] = useState(false);
  const log = useQuery({
    ...trpc.endpoints.logs.queryOptions({ tenantId, branch: branch.id, lines: LOG_LINES }),
    enabled: showLog && endpoint !== undefined,
    refetchInterval: showLog ? ENDPOINTS_POLL_MS : false,
  });
  const [settingsText, setSettingsText] = useState("");
  const parsed = parseSettings(settingsText);

  const state = endpoint?.state ?? "none";
  const busy = start.isPending || stop.isPending || state === "starting" || state === "stopping";
  const followsPrimary = Boolean(branch.primary);
  const error = start.isError ? { title: "Could not start endpoint.", error: start.error } : stop.isError ? { title: "Could not stop endpoint.", error: stop.error } : null;

  let action;
  const logToggle =
    endpoint !== undefined && state !== "stopped" ? (
      <>
        <button type="button" className="button button-small" aria-expanded={showLog} data-testid="endpoint-log-toggle" onClick={() => setShowLog((shown) => !shown)}>
          {showLog ? "Hide log" : "Log"}
        </button>{" "}
      </>
    ) : null;
  if (state === "running" || stop.isPending) {
    action = (
      <>
        {logToggle}
        <button type="button" className="button button-danger-outline" disabled={busy} onClick={() => stop.mutate({ tenantId, branch: branch.id })}>
          {stop.isPending || state === "stopping" ? "Stopping…" : "Stop"}
        </button>
      </>
    );
  } else if (followsPrimary) {
    action = (
      <span className="muted" title="this branch follows an external primary; start endpoints on a branch of it">
        follows primary
      </span>
    );
  } else {
    action = (
      <>
        {logToggle}
        <button
          type="button"
          className="button button-small"
          aria-expanded={showSettings}
          data-testid="endpoint-settings-toggle"
          title="postgresql.conf settings for the endpoint"
          onClick={() => setShowSettings((shown) => !shown)}
        >
          Settings…
        </button>{" "}
        <button
          type="button"
          className="button button-primary"
          disabled={busy || ACTIVE.has(state) || "error" in parsed}
          onClick={() => {
            if ("error" in parsed) return;
            stop.reset();
            start.mutate({ tenantId, branch: branch.id, ...(Object.keys(parsed.settings).length ? { settings: parsed.settings } : {}) });
          }}
        >
          {start.isPending || state === "starting" ? "Starting…" : "Start"}
        </button>
      </>
    );
  }

  return (
    <>
      <tr data-testid="endpoint-row" data-branch={branch.name} data-timeline-id={branch.id} data-state={state} aria-busy={busy}>
        <td className="strong">
          <Link href={`/tenants/${tenantId}/timelines/${branch.id}`}>{branch.name}</Link>
        </td>
        <td>
          {endpoint ? (
            <span className={`badge badge-ep-${endpoint.state}`} title={`endpoint ${endpoint.id}, created ${formatTimestamp(endpoint.createdAt)}`} data-testid="endpoint-state">
              {endpoint.state}
            </span>
          ) : (
            <span className="muted" data-testid="endpoint-state">no endpoint</span>
          )}
        </td>
        <td className="num">{endpoint?.port ?? <span className="muted">—</span>}</td>
        <td>
          {endpoint?.connectionString ? (
            <>
              <ConnectionString value={endpoint.connectionString} />
              {Object.keys(endpoint.settings).length ? (
                <div className="muted endpoint-settings" data-testid="endpoint-settings">
                  {Object.entries(endpoint.settings).map(([name, value]) => (
                    <Mono key={name}>{`${name}=${value} `}</Mono>
                  ))}
                </div>
              ) : null}
            </>
          ) : endpoint?.stopLsn && state === "stopped" ? (
            <span className="muted">stopped at <Mono>{endpoint.stopLsn}</Mono></span>
          ) : (
            <span className="muted">—</span>
          )}
        </td>
        <td className="actions">{action}</td>
      </tr>
      {showLog && endpoint !== undefined && state !== "stopped" ? (
        <tr className="endpoint-log-row">
          <td colSpan={5}>
            {log.isError ? (
              <ErrorNotice title="Cannot read the endpoint's log." error={log.error} />
            ) : log.data ? (
              <pre className="endpoint-log" data-testid="endpoint-log">{log.data.lines.join("\n")}</pre>
            ) : (
              <p className="muted">Loading log…</p>
            )}
          </td>
        </tr>
      ) : null}
      {showSettings && !ACTIVE.has(state) && !followsPrimary ? (
        <tr className="endpoint-settings-row">
          <td colSpan={5}>
            <label className="field">
              <span className="field-label">Settings for the next start</span>
              <textarea
                className="input mono"
                rows={3}
                data-testid="endpoint-settings-input"
                placeholder={"work_mem=64MB\nshared_buffers=256MB"}
                value={settingsText}
                onChange={(e) => setSettingsText(e.target.value)}
              />
            </label>
            <p className="muted endpoint-settings">postgresql.conf, one name=value per line (PostgreSQL checks the values when it starts)</p>
            {"error" in parsed ? <p className="error-text" data-testid="endpoint-settings-error">{parsed.error}</p> : null}
          </td>
        </tr>
      ) : null}
      {start.data?.detachedSubscriptions?.length && state === "running" ? (
        <tr className="endpoint-error-row">
          <td colSpan={5}>
            <div className="notice notice-warn" role="status" data-testid="endpoint-detached-subscriptions">
              Disabled the subscriptions this branch inherited and detached them from their replication slots, which stay with the
              cluster it was made from: <Mono>{start.data.detachedSubscriptions.join(", ")}</Mono>
            </div>
          </td>
        </tr>
      ) : null}
      {error ? (
        <tr className="endpoint-error-row">
          <td colSpan={5}>
            <ErrorNotice title={error.title} error={error.error} />
          </td>
        </tr>
      ) : null}
    </>
  );
}

/** Lines of `name=value` (blank lines skipped) as settings, or what is wrong with the first bad line. */
export function parseSettings(text: string): { settings: Record<string, string> } | { error: string } {
  const settings: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const eq = line.indexOf("=");
    if (eq <= 0) return { error: `"${line}" is not name=value` };
    settings[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return { settings };
}

/** The connection string as selectable text, plus a copy button when the clipboard is available. */
function ConnectionString({ value }: { value: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <span className="conn">
      <code className="mono conn-string" data-testid="endpoint-connection">{value}</code>
      <button
        type="button"
        className="button button-small"
        onClick={() => {
          navigator.clipboard
            ?.writeText(value)
            .then(() => {
              setCopied(true);
              setTimeout(() => setCopied(false), 1_500);
            })
            .catch(() => {});
        }}
      >
        {copied ? "Copied" : "Copy"}
      </button>
    </span>
  );
}
