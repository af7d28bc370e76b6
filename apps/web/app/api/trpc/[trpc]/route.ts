// The browser's tRPC endpoint: forwards every call to the pageserver (see lib/server/trpc-proxy.ts).
import { proxyTrpc } from "@/lib/server/trpc-proxy";

export const dynamic = "force-dynamic";

export function GET(req: Request): Promise<Response> {
  return proxyTrpc(req);
}

export function POST(req: Request): Promise<Response> {
  return proxyTrpc(req);
}
