// The app router: merges the per-entity routers; the pageserver serves it at /trpc.
import { branchesRouter } from "./router/branches.ts";
import { endpointsRouter } from "./router/endpoints.ts";
import { healthRouter } from "./router/health.ts";
import { operationsRouter } from "./router/operations.ts";
import { tenantsRouter } from "./router/tenants.ts";
import { timelinesRouter } from "./router/timelines.ts";
import { router } from "./trpc.ts";

export const appRouter = router({
  health: healthRouter.health,
  tenants: tenantsRouter,
  timelines: timelinesRouter,
  operations: operationsRouter,
  branches: branchesRouter,
  endpoints: endpointsRouter,
});

export type AppRouter = typeof appRouter;
