import { publicProcedure, router } from "../trpc.ts";

export const healthRouter = router({
  health: publicProcedure.query(({ ctx }) => ({
    ok: true as const,
    version: ctx.info.version,
    startedAt: ctx.info.startedAt.toISOString(),
    uptimeSeconds: Math.round((Date.now() - ctx.info.startedAt.getTime()) / 1000),
    pageServiceAddress: ctx.info.pageServiceAddress,
    httpAddress: ctx.info.httpAddress,
    attachedTimelines: ctx.manager.attachedTimelineCount,
  })),
});
