import { describe, expect, it } from "vitest";
import { CATCH_UP_LAG_BYTES, CATCH_UP_MATERIALIZE_INTERVAL_MS, materializeWaitMs } from "./tenant-manager.ts";

describe("background materialization while a timeline catches up", () => {
  const receiver = (state: "streaming" | "backoff" | "connecting", primaryFlushLsn: bigint, lastRecordLsn: bigint) => ({ status: { state, primaryFlushLsn }, lastRecordLsn });

  it("waits between groups only while the walreceiver streams a backlog larger than the catch-up lag", () => {
    const at = 0x5_0000_0000n;
    expect(materializeWaitMs(undefined)).toBe(0);
    expect(materializeWaitMs(receiver("streaming", at, at))).toBe(0);
    expect(materializeWaitMs(receiver("streaming", at + CATCH_UP_LAG_BYTES, at))).toBe(0);
    expect(materializeWaitMs(receiver("streaming", at + CATCH_UP_LAG_BYTES + 1n, at))).toBe(CATCH_UP_MATERIALIZE_INTERVAL_MS);
    expect(materializeWaitMs(receiver("streaming", at + 1024n * CATCH_UP_LAG_BYTES, at))).toBe(CATCH_UP_MATERIALIZE_INTERVAL_MS);
    // a receiver that is not streaming (primary gone, reconnecting) has a stale primary position
    expect(materializeWaitMs(receiver("backoff", at + 1024n * CATCH_UP_LAG_BYTES, at))).toBe(0);
    expect(materializeWaitMs(receiver("connecting", at + 1024n * CATCH_UP_LAG_BYTES, at))).toBe(0);
  });
});
