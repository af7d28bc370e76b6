import { LsnOutOfRangeError, PageNotFoundError, parseForkName, parseRelTag, UnsupportedRecordError } from "@strata/core";
import { decodeLoggedRecord, decodeRecordLogPiece, formatLsn, formatRecordLine, parseLsn, storeKey, walRecordLogKey, WaitLsnTimeoutError } from "@strata/core";
import { NotFoundError, TimeoutError } from "../errors.ts";
import { redactPrimaryUrl } from "../redact.ts";
import { timelineView } from "../service/tenants.ts";
import { getPageInput, latestLsnInput, setPrimaryInput, timelineGetInput, timelineListInput, waitLsnInput, waldumpInput } from "../schemas.ts";
import { recordOperation } from "../service/operations.ts";
import { activeEndpointOn } from "../service/active-endpoint.ts";
import { switchPrimary } from "../service/primary-switch.ts";
import { InvalidInputError, NotImplementedError } from "../errors.ts";
import { publicProcedure, router, type Context } from "../trpc.ts";

async function withProgress(ctx: Context, view: ReturnType<typeof timelineView>, primaryUrl: string | null) {
  const markers = await ctx.manager.markers(view.tenantId, view.id);
  const receiver = ctx.manager.receiverStatus(view.tenantId, view.id);
  const last = markers?.lastRecordLsn ?? 0n;
  const primaryFlush = receiver?.primaryFlushLsn ?? null;
  const compaction = ctx.manager.compactionStatus(view.tenantId, view.id);
  const sizes = await ctx.manager.timelineSizes(view.tenantId, view.id);
  // a branch with a running endpoint follows that endpoint's postgres, not an external primary
  const endpointFed = primaryUrl !== null && (await activeEndpointOn(ctx.db, view.id)) !== null;
  return {
    ...view,
    lastRecordLsn: formatLsn(last),
    diskConsistentLsn: formatLsn(markers?.diskConsistentLsn ?? 0n),
    startLsn: formatLsn(markers?.startLsn ?? 0n),
    attached: markers !== undefined,
    primary: primaryUrl ? redactPrimaryUrl(primaryUrl) : null,
    /** the primary is an external server (timelines.setPrimary can move it), not the branch's endpoint */
    followsExternalPrimary: primaryUrl !== null && !endpointFed,
    primaryFlushLsn: primaryFlush === null ? null : formatLsn(primaryFlush),
    lagBytes: primaryFlush === null ? null : Number(primaryFlush > last ? primaryFlush - last : 0n),
    walreceiver: receiver
      ? { state: receiver.state, lastError: receiver.lastError, reconnects: receiver.reconnects, receivedBytes: receiver.receivedBytes, records: receiver.records }
      : null,
    /** bytes the timeline takes on the pageserver's disk (LevelDB, page image and record log files) */
    physicalSizeBytes: sizes.physicalBytes,
    /** bytes of all relation forks of all its databases at lastRecordLsn (null when not attached) */
    logicalSizeBytes: sizes.logicalBytes,
    /** the last compaction pass since the pageserver started */
    compaction: compaction
      ? { at: new Date(compaction.at).toISOString(), lsn: formatLsn(compaction.lsn), images: compaction.result.images, movedVersions: compaction.result.moved, stopped: compaction.result.stopped }
      : null,
  };
}

async function findTimeline(ctx: Context, tenantId: string, timelineId: string) {
  await ctx.tenants.get(tenantId);
  const row = await ctx.db.timeline.findFirst({ where: { id: timelineId, tenantId } });
  if (!row) throw new NotFoundError(`timeline ${timelineId} not found in tenant ${tenantId}`);
  return row;
}

export const timelinesRouter = router({
  list: publicProcedure.input(timelineListInput).query(async ({ ctx, input }) => {
    await ctx.tenants.get(input.tenantId);
    const rows = await ctx.db.timeline.findMany({ where: { tenantId: input.tenantId }, orderBy: { createdAt: "asc" } });
    return Promise.all(rows.map((row) => withProgress(ctx, timelineView(row), row.primaryUrl)));
  }),
  get: publicProcedure.input(timelineGetInput).query(async ({ ctx, input }) => {
    const row = await findTimeline(ctx, input.tenantId, input.timelineId);
    return withProgress(ctx, timelineView(row), row.primaryUrl);
  }),
  /** Recent LSN progress samples (about 1/s): last_record_lsn, disk_consistent_lsn, primary flush LSN, ingest rate. */
  progress: publicProcedure.input(timelineGetInput).query(async ({ ctx, input }) => {
    await findTimeline(ctx, input.tenantId, input.timelineId);
    return ctx.manager.progressOf(input.tenantId, input.timelineId).map((p) => ({
      time: new Date(p.time).toISOString(),
      lastRecordLsn: formatLsn(p.lastRecordLsn),
      diskConsistentLsn: formatLsn(p.diskConsistentLsn),
      primaryFlushLsn: p.primaryFlushLsn === null ? null : formatLsn(p.primaryFlushLsn),
      // byte positions as numbers for charting (exact below 2^53 = 8 PiB of WAL)
      lastRecordBytes: Number(p.lastRecordLsn),
      diskConsistentBytes: Number(p.diskConsistentLsn),
      primaryFlushBytes: p.primaryFlushLsn === null ? null : Number(p.primaryFlushLsn),
      ingestBytesPerSecond: Math.round(p.ingestRate),
    }));
  }),
  /** GetPage@LSN: the 8192-byte page (base64) of a relation block as of an LSN (default latest). */
  getPage: publicProcedure.input(getPageInput).query(async ({ ctx, input }) => {
    await findTimeline(ctx, input.tenantId, input.timelineId);
    try {
      const { page, lsn } = await ctx.manager.readPage(
        input.tenantId,
        input.timelineId,
        parseRelTag(input.rel),
        parseForkName(input.fork),
        input.block,
        input.lsn === "latest" ? undefined : parseLsn(input.lsn),
        input.waitSeconds * 1000,
      );
      return { lsn: formatLsn(lsn), page: page.toString("base64") };
    } catch (err) {
      if (err instanceof WaitLsnTimeoutError) throw new TimeoutError(err.message);
      if (err instanceof PageNotFoundError) throw new NotFoundError(err.message);
      if (err instanceof LsnOutOfRangeError) throw new InvalidInputError(err.message);
      if (err instanceof UnsupportedRecordError) throw new NotImplementedError(err.message);
      throw err;
    }
  }),
  /**
   * The LSN a full backup at "latest" uses: every record the timeline's WAL source (its primary,
   * or its endpoint) has flushed, so a commit acknowledged before this request is in it even
   * while ingest is still behind; waited for up to `waitSeconds` (TIMEOUT otherwise), and rounded
   * down to a record boundary.
   */
  latestLsn: publicProcedure.input(latestLsnInput).query(async ({ ctx, input }) => {
    await findTimeline(ctx, input.tenantId, input.timelineId);
    const handle = ctx.manager.get(input.tenantId, input.timelineId);
    if (!handle) throw new NotFoundError(`timeline ${input.timelineId} is not attached`);
    const requested = await ctx.manager.latestLsn(input.tenantId, input.timelineId);
    let markers = await handle.store.readMarkers();
    if (requested > markers.lastRecordLsn) {
      try {
        markers = await ctx.manager.waitForLsn(input.tenantId, input.timelineId, requested, input.waitSeconds * 1000);
      } catch (err) {
        if (!(err instanceof WaitLsnTimeoutError)) throw err;
        markers = await handle.store.readMarkers();
        throw new TimeoutError(
          `timeline ${input.timelineId} has not ingested its source's WAL up to ${formatLsn(requested)} yet (last_record_lsn ${formatLsn(markers.lastRecordLsn)}): try again once it has caught up, or give an LSN it has`,
        );
      }
    }
    const lsn = await handle.reader.roundToRecordBoundary(requested);
    if (lsn < markers.startLsn) throw new InvalidInputError(`LSN ${formatLsn(requested)} lies in a record that begins before the first readable LSN ${formatLsn(markers.startLsn)}`);
    return { lsn: formatLsn(lsn) };
  }),
  /** Returns once the timeline has durably stored WAL up to `lsn` (TIMEOUT otherwise). */
  waitLsn: publicProcedure.input(waitLsnInput).mutation(async ({ ctx, input }) => {
    await findTimeline(ctx, input.tenantId, input.timelineId);
    try {
      const markers = await ctx.manager.waitForLsn(input.tenantId, input.timelineId, parseLsn(input.lsn), input.timeoutSeconds * 1000);
      return { lsn: input.lsn, diskConsistentLsn: formatLsn(markers.diskConsistentLsn) };
    } catch (err) {
      if (err instanceof WaitLsnTimeoutError) throw new TimeoutError(err.message);
      throw err;
    }
  }),
  /**
   * Compacts the timeline now: every block with history gets its page stored as an image at the
   * durable LSN and its older versions moved aside (docs/key-layout.md, "History cuts"), so full
   * backups and endpoints started afterwards read images. The pageserver also does this by itself
   * once the timeline's WAL goes quiet.
   */
  compact: publicProcedure.input(timelineGetInput).mutation(async ({ ctx, input }) => {
    await findTimeline(ctx, input.tenantId, input.timelineId);
    if (!ctx.manager.get(input.tenantId, input.timelineId)) throw new NotFoundError(`timeline ${input.timelineId} is not attached`);
    const { lsn, result } = await ctx.manager.compactNow(input.tenantId, input.timelineId);
    return { lsn: formatLsn(lsn), images: result.images, trimmedBlocks: result.trimmed, movedVersions: result.moved, unchanged: result.unchanged, failed: result.failed };
  }),
  /**
   * Follows another server of the same database system from now on (after a failover, the
   * promoted standby at its own address): checked and its slot created before anything changes,
   * then the walreceiver resumes there from the timeline's durable LSN.
   */
  setPrimary: publicProcedure.input(setPrimaryInput).mutation(async ({ ctx, input }) => {
    await ctx.tenants.get(input.tenantId);
    return recordOperation(ctx.db, { kind: "timeline.setPrimary", actor: ctx.actor, tenantId: input.tenantId, timelineId: input.timelineId, input: { ...input, primary: redactPrimaryUrl(input.primary) } }, () =>
      switchPrimary(ctx.db, ctx.manager, input),
    );
  }),
  /** The stored WAL records in [from, to), one pg_waldump-comparable line each. */
  waldump: publicProcedure.input(waldumpInput).query(async ({ ctx, input }) => {
    await findTimeline(ctx, input.tenantId, input.timelineId);
    const handle = ctx.manager.get(input.tenantId, input.timelineId);
    if (!handle) throw new NotFoundError(`timeline ${input.timelineId} is not attached`);
    const from = input.from ? parseLsn(input.from) : 0n;
    const to = input.to ? parseLsn(input.to) : 0xffffffffffffffffn;
    const lines: string[] = [];
    let truncated = false;
    if (to > from) {
      // the record log is stored in pieces keyed by their first record: the piece holding `from`
      // may start before it, so begin at the last piece keyed at or below `from`
      let first = storeKey(walRecordLogKey(), from);
      for await (const [key] of handle.store.iterateReverse(storeKey(walRecordLogKey(), 0n), storeKey(walRecordLogKey(), from + 1n), 1)) first = key;
      pieces: for await (const [, value] of handle.store.iterate(first, storeKey(walRecordLogKey(), to - 1n))) {
        for (const logged of decodeRecordLogPiece(value, handle.store.recordLog)) {
          if (logged.start < from) continue;
          if (logged.start >= to) break pieces;
          if (lines.length >= input.limit) {
            truncated = true;
            break pieces;
          }
          lines.push(formatRecordLine(decodeLoggedRecord(logged)));
        }
      }
    }
    return { lines, truncated };
  }),
});
