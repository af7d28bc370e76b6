import { z } from "zod";
import { idSchema } from "../schemas.ts";
import { publicProcedure, router } from "../trpc.ts";

export const operationsRouter = router({
  list: publicProcedure
    .input(z.object({ tenantId: idSchema.optional(), limit: z.number().int().min(1).max(1000).default(100) }).default({ limit: 100 }))
    .query(async ({ ctx, input }) => {
      const rows = await ctx.db.operation.findMany({
        where: input.tenantId ? { tenantId: input.tenantId } : {},
        orderBy: { id: "desc" },
        take: input.limit,
      });
      return rows.map((r) => ({
        id: r.id,
        kind: r.kind,
        actor: r.actor,
        tenantId: r.tenantId,
        timelineId: r.timelineId,
        result: r.result,
        error: r.error,
        startedAt: r.startedAt.toISOString(),
        finishedAt: r.finishedAt?.toISOString() ?? null,
      }));
    }),
});
