// Where the pageserver's HTTP API lives, read from the environment at request time (never
// inlined at build time), so one `next build` serves any pageserver. Server-side only.
export const DEFAULT_STRATA_API = "http://127.0.0.1:9898";

export function strataApiUrl(): string {
  const raw = process.env.STRATA_API?.trim() || DEFAULT_STRATA_API;
  return raw.replace(/\/+$/, "");
}
