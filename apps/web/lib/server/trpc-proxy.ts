// Same-origin proxy between the browser's tRPC client and the pageserver's tRPC API:
//   browser -> /api/trpc/<procedures>?<query> -> ${STRATA_API}/trpc/<procedures>?<query>
// The request's method, body and content type pass through and the answer's body is streamed
// back. Two adjustments keep the browser console clean:
//  - tRPC errors (CONFLICT, NOT_FOUND…) are answered with HTTP 200 and the upstream status in
//    `x-strata-upstream-status`. The tRPC client reads success or failure from the JSON body, not
//    the status, while the browser logs every non-2xx fetch as a console error.
//  - when the pageserver cannot be reached, the proxy answers in tRPC's own error shape
//    (code BAD_GATEWAY) with a readable message, so the UI shows it like any other API error.
import { strataApiUrl } from "./strata-api";

const UPSTREAM_TIMEOUT_MS = 15_000;
const FORWARDED_REQUEST_HEADERS = ["content-type", "accept", "trpc-accept"];
/** JSON-RPC code tRPC uses for BAD_GATEWAY */
const JSONRPC_BAD_GATEWAY = -32603;

export async function proxyTrpc(req: Request): Promise<Response> {
  const url = new URL(req.url);
  const procedures = url.pathname.replace(/^\/api\/trpc\/?/, "");
  const base = strataApiUrl();
  const target = `${base}/trpc/${procedures}${url.search}`;

  const headers = new Headers({ "x-strata-actor": "web-dashboard" });
  for (const name of FORWARDED_REQUEST_HEADERS) {
    const value = req.headers.get(name);
    if (value) headers.set(name, value);
  }
  const hasBody = req.method !== "GET" && req.method !== "HEAD";

  let upstream: Response;
  try {
    upstream = await fetch(target, {
      method: req.method,
      headers,
      body: hasBody ? await req.arrayBuffer() : undefined,
      cache: "no-store",
      redirect: "manual",
      signal: AbortSignal.timeout(UPSTREAM_TIMEOUT_MS),
    });
  } catch (err) {
    return gatewayError(url, procedures, describeFetchFailure(err, base));
  }

  const contentType = upstream.headers.get("content-type") ?? "";
  if (!contentType.includes("application/json")) {
    await upstream.body?.cancel();
    return gatewayError(url, procedures, `unexpected HTTP ${upstream.status} answer from ${base}/trpc (is STRATA_API pointing at a pageserver?)`);
  }
  return new Response(upstream.body, {
    status: 200,
    headers: {
      "content-type": contentType,
      "cache-control": "no-store",
      "x-strata-upstream-status": String(upstream.status),
    },
  });
}

function describeFetchFailure(err: unknown, base: string): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError" || e.name === "AbortError") {
    return `pageserver at ${base} did not answer within ${UPSTREAM_TIMEOUT_MS / 1000} s`;
  }
  const code = e.cause?.code;
  const reason =
    code === "ECONNREFUSED" ? "connection refused"
    : code === "ENOTFOUND" ? "host not found"
    : code === "ECONNRESET" ? "connection reset"
    : code ?? e.cause?.message ?? e.message ?? "unknown error";
  return `pageserver unreachable at ${base} (${reason})`;
}

/** An answer in tRPC's error envelope, one entry per procedure for batched calls. */
function gatewayError(url: URL, procedures: string, message: string): Response {
  const paths = procedures.split(",").map((p) => decodeURIComponent(p));
  const entry = (path: string) => ({
    error: { message, code: JSONRPC_BAD_GATEWAY, data: { code: "BAD_GATEWAY", httpStatus: 502, path } },
  });
  const body = url.searchParams.get("batch") === "1" ? paths.map(entry) : entry(paths[0] ?? "");
  return Response.json(body, {
    status: 200,
    headers: { "cache-control": "no-store", "x-strata-upstream-status": "502" },
  });
}
