"use client";
// React Query + tRPC wiring for the whole app. The browser talks only to this Next app
// (/api/trpc), which proxies to the pageserver; see lib/server/trpc-proxy.ts.
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createTRPCClient, httpBatchLink } from "@trpc/client";
import type { AppRouter } from "@strata/api";
import { useState, type ReactNode } from "react";
import { isClientError } from "@/lib/errors";
import { TRPCProvider } from "@/lib/trpc";

function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 2_000,
        // one quick retry for transient failures; never for answers like NOT_FOUND
        retry: (failures, err) => failures < 1 && !isClientError(err),
        retryDelay: 500,
      },
    },
  });
}

export function Providers({ children }: { children: ReactNode }) {
  const [queryClient] = useState(makeQueryClient);
  const [trpcClient] = useState(() =>
    createTRPCClient<AppRouter>({ links: [httpBatchLink({ url: "/api/trpc" })] }),
  );
  return (
    <QueryClientProvider client={queryClient}>
      <TRPCProvider trpcClient={trpcClient} queryClient={queryClient}>
        {children}
      </TRPCProvider>
    </QueryClientProvider>
  );
}
