// The audit trail: every mutating API call is an Operation row with who, what, when and result.
import type { Database } from "../db.ts";

export async function recordOperation<T>(
  db: Database,
  op: { kind: string; actor: string; tenantId?: string; timelineId?: string; input?: unknown; tenantIdOf?: (result: T) => string },
  run: () => Promise<T>,
): Promise<T> {
  const row = await db.operation.create({
    data: {
      kind: op.kind,
      actor: op.actor,
      tenantId: op.tenantId,
      timelineId: op.timelineId,
      input: op.input === undefined ? null : JSON.stringify(op.input),
    },
  });
  try {
    const result = await run();
    await db.operation.update({
      where: { id: row.id },
      data: { result: "ok", finishedAt: new Date(), ...(op.tenantIdOf ? { tenantId: op.tenantIdOf(result) } : {}) },
    });
    return result;
  } catch (err) {
    await db.operation
      .update({ where: { id: row.id }, data: { result: "error", error: (err as Error).message, finishedAt: new Date() } })
      .catch(() => {});
    throw err;
  }
}
