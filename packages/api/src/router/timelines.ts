import { formatLsn } from "@strata/core";
import { NotFoundError } from "../errors.ts";
import { timelineView } from "../service/tenants.ts";
import { timelineGetInput, timelineListInput } from "../schemas.ts";
import { publicProcedure, router, type Context } from "../trpc.ts";

async function withProgress(ctx: Context, view: ReturnType<typeof timelineView>) {
  const markers = await ctx.manager.markers(view.tenantId, view.id);
  return {
    ...view,
    lastRecordLsn: formatLsn(markers?.lastRecordLsn ?? 0n),
    diskConsistentLsn: formatLsn(markers?.diskConsistentLsn ?? 0n),
    startLsn: formatLsn(markers?.startLsn ?? 0n),
    attached: markers !== undefined,
  };
}

export const timelinesRouter = router({
  list: publicProcedure.input(timelineListInput).query(async ({ ctx, input }) => {
    const tenant = await ctx.tenants.get(input.tenantId);
    return Promise.all(tenant.timelines.map((tl) => withProgress(ctx, tl)));
  }),
  get: publicProcedure.input(timelineGetInput).query(async ({ ctx, input }) => {
    await ctx.tenants.get(input.tenantId);
    const row = await ctx.db.timeline.findFirst({ where: { id: input.timelineId, tenantId: input.tenantId } });
    if (!row) throw new NotFoundError(`timeline ${input.timelineId} not found in tenant ${input.tenantId}`);
    return withProgress(ctx, timelineView(row));
  }),
});
