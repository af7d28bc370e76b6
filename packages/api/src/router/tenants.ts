import { redactPrimaryUrl } from "../redact.ts";
import { recordOperation } from "../service/operations.ts";
import { tenantCreateInput, tenantIdInput } from "../schemas.ts";
import { publicProcedure, router } from "../trpc.ts";

export const tenantsRouter = router({
  list: publicProcedure.query(({ ctx }) => ctx.tenants.list()),
  get: publicProcedure.input(tenantIdInput).query(async ({ ctx, input }) => {
    const tenant = await ctx.tenants.get(input.id);
    /** bytes the tenant's timelines take on the pageserver's disk */
    const physicalSizeBytes = await ctx.manager.tenantDiskBytes(tenant.id);
    return { ...tenant, physicalSizeBytes };
  }),
  /** bytes of the primary's base backup imported so far while `create` runs; null otherwise */
  importProgress: publicProcedure.input(tenantIdInput).query(({ ctx, input }) => ctx.tenants.importProgress(input.id)),
  create: publicProcedure.input(tenantCreateInput).mutation(({ ctx, input }) =>
    recordOperation(ctx.db, { kind: "tenant.create", actor: ctx.actor, tenantId: input.id, input: { ...input, fromPrimary: input.fromPrimary === undefined ? undefined : redactPrimaryUrl(input.fromPrimary) }, tenantIdOf: (t) => t.id }, () =>
      ctx.tenants.create(input.id, { name: input.name, fromPrimary: input.fromPrimary, slot: input.slot }),
    ),
  ),
  delete: publicProcedure.input(tenantIdInput).mutation(async ({ ctx, input }) => {
    const { warnings } = await recordOperation(ctx.db, { kind: "tenant.delete", actor: ctx.actor, tenantId: input.id, input }, () => ctx.tenants.delete(input.id));
    return { id: input.id, deleted: true as const, warnings };
  }),
});
