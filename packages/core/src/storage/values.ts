// Values stored under versioned keys. The first byte says what the version is; reads stop at the
// newest Image or at a record that initializes the page, and replay the records above it.
import type { Lsn } from "../lsn.ts";
import { writeLsnBE } from "./keys.ts";

export const enum ValueKind {
  /** a complete value: a page image, a file's bytes, a u32 size… */
  Image = 1,
  /** a PostgreSQL WAL record (raw bytes) to apply by redo */
  WalRecord = 2,
  /** a change Strata derives from a record where PostgreSQL's own redo touches an unregistered page */
  Derived = 3,
  /** the entity does not exist from this LSN on */
  Tombstone = 4,
}

export const enum DerivedKind {
  ClogSetStatus = 1,
  ClearVisibilityMapBits = 2,
  MultiXactOffset = 3,
  MultiXactMembers = 4,
  TruncateVisibilityMap = 5,
  ZeroFsmTail = 6,
  CopyPageFrom = 7,
}

export function imageValue(bytes: Buffer): Buffer {
  const value = Buffer.allocUnsafe(1 + bytes.length);
  value[0] = ValueKind.Image;
  bytes.copy(value, 1);
  return value;
}

export function u32Value(n: number): Buffer {
  const value = Buffer.alloc(5);
  value[0] = ValueKind.Image;
  value.writeUInt32LE(n >>> 0, 1);
  return value;
}

export const TOMBSTONE = Buffer.from([ValueKind.Tombstone]);

/** [kind][flags: 1 = will_init][record start LSN u64 BE][raw record] */
export function walRecordValue(raw: Buffer, recordLsn: Lsn, willInit: boolean): Buffer {
  const value = Buffer.allocUnsafe(10 + raw.length);
  value[0] = ValueKind.WalRecord;
  value[1] = willInit ? 1 : 0;
  writeLsnBE(value, 2, recordLsn);
  value.set(raw, 10); // a plain memcpy (Buffer#copy validates and makes a view first)
  return value;
}

export function derivedValue(kind: DerivedKind, payload: Buffer, willInit = false): Buffer {
  const value = Buffer.allocUnsafe(3 + payload.length);
  value[0] = ValueKind.Derived;
  value[1] = willInit ? 1 : 0;
  value[2] = kind;
  payload.copy(value, 3);
  return value;
}

export type StoredValue =
  | { kind: ValueKind.Image; bytes: Buffer }
  | { kind: ValueKind.WalRecord; willInit: boolean; recordLsn: Lsn; raw: Buffer }
  | { kind: ValueKind.Derived; willInit: boolean; derived: DerivedKind; payload: Buffer }
  | { kind: ValueKind.Tombstone };

export function decodeValue(value: Buffer): StoredValue {
  switch (value[0]) {
    case ValueKind.Image:
      return { kind: ValueKind.Image, bytes: value.subarray(1) };
    case ValueKind.WalRecord:
      return { kind: ValueKind.WalRecord, willInit: value[1] === 1, recordLsn: value.readBigUInt64BE(2), raw: value.subarray(10) };
    case ValueKind.Derived:
      return { kind: ValueKind.Derived, willInit: value[1] === 1, derived: value[2] as DerivedKind, payload: value.subarray(3) };
    case ValueKind.Tombstone:
      return { kind: ValueKind.Tombstone };
    default:
      throw new Error(`corrupt stored value: unknown kind ${value[0]}`);
  }
}

export function readU32Value(value: StoredValue | undefined): number | undefined {
  if (!value || value.kind !== ValueKind.Image) return undefined;
  return value.bytes.readUInt32LE(0);
}
