export { appRouter, type AppRouter } from "./root.ts";
export { createCallerFactory, type Context, type ServerInfo } from "./trpc.ts";
export { TenantService, type TenantView, type TimelineView } from "./service/tenants.ts";
export { openDatabase, applyMigrations, defaultDatabaseUrl, isPostgresUrl, type Database } from "./db.ts";
export * from "./errors.ts";
export * from "./schemas.ts";
export { BranchService } from "./service/branches.ts";
export { EndpointService, type EndedEndpoint, type EndpointView } from "./service/endpoints.ts";
