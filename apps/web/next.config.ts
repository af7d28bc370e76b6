// Next.js config for the Strata dashboard. The pageserver URL is NOT configured here: it is read
// from STRATA_API at request time by the tRPC proxy (app/api/trpc/[trpc]/route.ts), so one build
// runs against any pageserver.
import path from "node:path";
import type { NextConfig } from "next";

const config: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  // the monorepo root (one lockfile there); silences Next's workspace-root inference
  turbopack: { root: path.resolve(import.meta.dirname, "../..") },
};

export default config;
