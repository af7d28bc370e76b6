import { z } from "zod";
import { recordOperation } from "../service/operations.ts";
import { idSchema } from "../schemas.ts";
import { publicProcedure, router } from "../trpc.ts";

const branchRef = z.string().min(1).max(63);

export const endpointsRouter = router({
  start: publicProcedure
    .input(
      z.object({
        tenantId: idSchema,
        branch: branchRef,
        port: z.number().int().min(1024).max(65535).optional(),
        /** postgresql.conf settings for this endpoint (checked by checkEndpointSettings, then by postgres) */
        settings: z.record(z.string().max(63), z.string().max(1024)).optional(),
      }),
    )
    .mutation(({ ctx, input }) =>
      recordOperation(ctx.db, { kind: "endpoint.start", actor: ctx.actor, tenantId: input.tenantId, input }, () => ctx.endpoints.start(input)),
    ),
  stop: publicProcedure
    .input(z.object({ tenantId: idSchema, branch: branchRef }))
    .mutation(({ ctx, input }) =>
      recordOperation(ctx.db, { kind: "endpoint.stop", actor: ctx.actor, tenantId: input.tenantId, input }, () => ctx.endpoints.stop(input)),
    ),
  list: publicProcedure.input(z.object({ tenantId: idSchema })).query(({ ctx, input }) => ctx.endpoints.list(input.tenantId)),
  /** the tail of the postgres log of the branch's newest endpoint */
  logs: publicProcedure
    .input(z.object({ tenantId: idSchema, branch: branchRef, lines: z.number().int().min(1).max(5000).default(100) }))
    .query(({ ctx, input }) => ctx.endpoints.logs(input)),
});
