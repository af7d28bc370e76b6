import { z } from "zod";
import { recordOperation } from "../service/operations.ts";
import { idSchema, lsnSchema } from "../schemas.ts";
import { publicProcedure, router } from "../trpc.ts";

export const branchCreateInput = z.object({
  tenantId: idSchema,
  name: z.string().min(1).max(63),
  parentTimelineId: idSchema.optional(),
  /** the parent by branch name (instead of parentTimelineId) */
  parentBranch: z.string().min(1).max(63).optional(),
  lsn: lsnSchema.optional(),
  at: z.string().min(1).optional(),
});

export const branchesRouter = router({
  create: publicProcedure.input(branchCreateInput).mutation(({ ctx, input }) =>
    recordOperation(ctx.db, { kind: "branch.create", actor: ctx.actor, tenantId: input.tenantId, input }, () => ctx.branches.create(input)),
  ),
  delete: publicProcedure.input(z.object({ tenantId: idSchema, branch: z.string().min(1).max(63) })).mutation(({ ctx, input }) =>
    recordOperation(ctx.db, { kind: "branch.delete", actor: ctx.actor, tenantId: input.tenantId, input }, () => ctx.branches.delete(input)),
  ),
  list: publicProcedure.input(z.object({ tenantId: idSchema })).query(({ ctx, input }) => ctx.branches.list(input.tenantId)),
});
