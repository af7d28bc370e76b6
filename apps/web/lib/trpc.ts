"use client";
// The typed tRPC hooks for client components. Only the router's TYPE comes from @strata/api, so
// none of the pageserver's server-side code (prisma, classic-level) enters the browser bundle.
import type { AppRouter } from "@strata/api";
import { createTRPCContext } from "@trpc/tanstack-react-query";
import type { inferRouterInputs, inferRouterOutputs } from "@trpc/server";

export const { TRPCProvider, useTRPC, useTRPCClient } = createTRPCContext<AppRouter>();

export type RouterInputs = inferRouterInputs<AppRouter>;
export type RouterOutputs = inferRouterOutputs<AppRouter>;
export type Health = RouterOutputs["health"];
export type Tenant = RouterOutputs["tenants"]["list"][number];
export type TenantDetail = RouterOutputs["tenants"]["get"];
export type Timeline = RouterOutputs["timelines"]["list"][number];
export type TimelineDetail = RouterOutputs["timelines"]["get"];
export type ProgressSample = RouterOutputs["timelines"]["progress"][number];
export type Branch = RouterOutputs["branches"]["list"][number];
export type CreatedBranch = RouterOutputs["branches"]["create"];
export type Endpoint = RouterOutputs["endpoints"]["list"][number];
export type Operation = RouterOutputs["operations"]["list"][number];
