// tRPC setup: the context every procedure sees, and the mapping of domain errors to tRPC codes.
import { initTRPC, TRPCError } from "@trpc/server";
import type { TenantManager } from "@strata/core";
import type { Database } from "./db.ts";
import { ConflictError, InvalidInputError, NotFoundError, NotImplementedError, PrimaryRequestError, TimeoutError } from "./errors.ts";
import type { BranchService } from "./service/branches.ts";
import type { EndpointService } from "./service/endpoints.ts";
import type { TenantService } from "./service/tenants.ts";

export interface ServerInfo {
  version: string;
  startedAt: Date;
  pageServiceAddress: string;
  httpAddress: string;
}

export interface Context {
  db: Database;
  tenants: TenantService;
  branches: BranchService;
  endpoints: EndpointService;
  manager: TenantManager;
  info: ServerInfo;
  /** who is calling, for the audit trail (from the x-strata-actor header) */
  actor: string;
}

const t = initTRPC.context<Context>().create({
  errorFormatter({ shape }) {
    return shape;
  },
});

const mapDomainErrors = t.middleware(async ({ next }) => {
  const result = await next();
  if (!result.ok) {
    const cause = result.error.cause;
    if (cause instanceof NotFoundError) throw new TRPCError({ code: "NOT_FOUND", message: cause.message, cause });
    if (cause instanceof ConflictError) throw new TRPCError({ code: "CONFLICT", message: cause.message, cause });
    if (cause instanceof PrimaryRequestError) throw new TRPCError({ code: "BAD_REQUEST", message: cause.message, cause });
    if (cause instanceof NotImplementedError) throw new TRPCError({ code: "NOT_IMPLEMENTED", message: cause.message, cause });
    if (cause instanceof TimeoutError) throw new TRPCError({ code: "TIMEOUT", message: cause.message, cause });
    if (cause instanceof InvalidInputError || cause instanceof RangeError)
      throw new TRPCError({ code: "BAD_REQUEST", message: cause.message, cause });
  }
  return result;
});

export const router = t.router;
export const publicProcedure = t.procedure.use(mapDomainErrors);
export const createCallerFactory = t.createCallerFactory;
