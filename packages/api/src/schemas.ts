// Input schemas shared by the router and its clients.
import { z } from "zod";

export const idSchema = z.string().regex(/^[0-9a-f]{32}$/, "expected 32 lowercase hex characters");
export const lsnSchema = z.string().regex(/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/, "expected an LSN like 0/16B3748");

export const tenantIdInput = z.object({ id: idSchema });
export const tenantCreateInput = z
  .object({
    id: idSchema.optional(),
    /** unique; checked by the service (checkTenantName) */
    name: z.string().min(1).max(63).optional(),
    fromPrimary: z.string().min(1).optional(),
    slot: z.string().regex(/^[a-z0-9_]{1,63}$/, "slot names are 1-63 lowercase letters, digits and underscores").optional(),
  })
  .default({});
export const waitLsnInput = z.object({ tenantId: idSchema, timelineId: idSchema, lsn: lsnSchema, timeoutSeconds: z.number().min(0).max(3600).default(30) });
export const waldumpInput = z.object({
  tenantId: idSchema,
  timelineId: idSchema,
  from: lsnSchema.optional(),
  to: lsnSchema.optional(),
  limit: z.number().int().min(1).max(1_000_000).default(100_000),
});
export const timelineListInput = z.object({ tenantId: idSchema });
export const timelineGetInput = z.object({ tenantId: idSchema, timelineId: idSchema });
export const latestLsnInput = z.object({ tenantId: idSchema, timelineId: idSchema, waitSeconds: z.number().min(0).max(600).default(30) });
export const setPrimaryInput = z.object({
  tenantId: idSchema,
  timelineId: idSchema,
  primary: z.string().min(1),
  slot: z.string().regex(/^[a-z0-9_]{1,63}$/, "slot names are 1-63 lowercase letters, digits and underscores").optional(),
});
export const getPageInput = z.object({
  tenantId: idSchema,
  timelineId: idSchema,
  rel: z.string().regex(/^\d+\/\d+\/\d+$/, "expected SPC/DB/REL, e.g. 1663/5/16384"),
  fork: z.enum(["main", "fsm", "vm", "init"]).default("main"),
  block: z.number().int().min(0).max(0xfffffffe),
  lsn: z.union([lsnSchema, z.literal("latest")]).default("latest"),
  waitSeconds: z.number().min(0).max(600).default(30),
});
