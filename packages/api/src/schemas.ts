// Input schemas shared by the router and its clients.
import { z } from "zod";

export const idSchema = z.string().regex(/^[0-9a-f]{32}$/, "expected 32 lowercase hex characters");
export const lsnSchema = z.string().regex(/^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/, "expected an LSN like 0/16B3748");

export const tenantIdInput = z.object({ id: idSchema });
export const tenantCreateInput = z.object({ id: idSchema.optional() }).default({});
export const timelineListInput = z.object({ tenantId: idSchema });
export const timelineGetInput = z.object({ tenantId: idSchema, timelineId: idSchema });
