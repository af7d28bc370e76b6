import { describe, expect, it } from "vitest";
import { decodeReplOriginCheckpoint, encodeReplOriginCheckpoint } from "./replorigin-checkpoint.ts";

describe("pg_logical/replorigin_checkpoint", () => {
  it("round-trips origins with PostgreSQL's layout: magic, 16-byte states, CRC-32C of what precedes it", () => {
    const states = [{ id: 1, remoteLsn: 0x5a5a5an }, { id: 65534, remoteLsn: 0x1_2345_6789n }];
    const file = encodeReplOriginCheckpoint(states);
    expect(file.length).toBe(4 + 2 * 16 + 4);
    expect(file.readUInt32LE(0)).toBe(0x1257dade);
    expect(file.readUInt16LE(4 + 16)).toBe(65534);
    expect(file.subarray(6, 12).every((b) => b === 0)).toBe(true);
    expect(decodeReplOriginCheckpoint(file)).toEqual(states);
    expect(decodeReplOriginCheckpoint(encodeReplOriginCheckpoint([]))).toEqual([]);
  });

  it("refuses a file with a wrong checksum, magic or length", () => {
    const file = encodeReplOriginCheckpoint([{ id: 2, remoteLsn: 7n }]);
    const flipped = Buffer.from(file);
    flipped[12] ^= 1;
    expect(() => decodeReplOriginCheckpoint(flipped)).toThrow(/checksum/);
    const magic = Buffer.from(file);
    magic[0] ^= 1;
    expect(() => decodeReplOriginCheckpoint(magic)).toThrow(/magic/);
    expect(() => decodeReplOriginCheckpoint(file.subarray(0, file.length - 3))).toThrow(/bytes/);
  });
});
