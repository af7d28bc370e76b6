// Typed client for the pageserver's API, used by the CLI, tests and automation.
import { createTRPCClient, httpLink, TRPCClientError } from "@trpc/client";
import type { AppRouter } from "./root.ts";

export const DEFAULT_API_URL = "http://127.0.0.1:9898";

export function createStrataClient(serverUrl: string = DEFAULT_API_URL, actor = "api-client") {
  const base = serverUrl.replace(/\/+$/, "");
  return createTRPCClient<AppRouter>({
    links: [httpLink({ url: `${base}/trpc`, headers: { "x-strata-actor": actor } })],
  });
}

export type StrataClient = ReturnType<typeof createStrataClient>;

/** The tRPC error code (NOT_FOUND, CONFLICT, BAD_REQUEST…) of a failed call, if any. */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof TRPCClientError) return (err.data as { code?: string } | undefined)?.code;
  return undefined;
}

export { TRPCClientError };
export type { AppRouter };
