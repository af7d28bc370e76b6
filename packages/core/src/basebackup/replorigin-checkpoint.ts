// pg_logical/replorigin_checkpoint: where each replication origin's apply has got to (the remote
// LSN of the last transaction applied from it), as a checkpoint writes it and startup reads it
// back (origin.c). Layout, little-endian: [magic u32] then per origin ReplicationStateOnDisk
// {roident u16, 6 bytes padding (zero), remote_lsn u64} then CRC-32C (u32) over everything before.
// Without it a subscriber started from a full backup would not know what it applied, and would
// take again what its publisher sends after its slot's confirmed position.
import type { Lsn } from "../lsn.ts";
import { crc32c } from "../wal/crc32c.ts";

export const REPLORIGIN_CHECKPOINT_PATH = "pg_logical/replorigin_checkpoint";
const MAGIC = 0x1257dade;
const STATE_SIZE = 16;

export interface ReplicationOriginState {
  /** roident: the origin's id in pg_replication_origin */
  id: number;
  remoteLsn: Lsn;
}

export function encodeReplOriginCheckpoint(states: ReadonlyArray<ReplicationOriginState>): Buffer {
  const file = Buffer.alloc(4 + STATE_SIZE * states.length + 4);
  file.writeUInt32LE(MAGIC, 0);
  states.forEach((state, i) => {
    file.writeUInt16LE(state.id, 4 + STATE_SIZE * i);
    file.writeBigUInt64LE(state.remoteLsn, 4 + STATE_SIZE * i + 8);
  });
  file.writeUInt32LE(crc32c(file.subarray(0, file.length - 4)), file.length - 4);
  return file;
}

/** The states of a replorigin_checkpoint file; throws on a wrong magic, length or checksum. */
export function decodeReplOriginCheckpoint(file: Buffer): ReplicationOriginState[] {
  if (file.length < 8 || (file.length - 8) % STATE_SIZE !== 0) throw new Error(`replorigin_checkpoint of ${file.length} bytes: not a magic, whole states and a checksum`);
  if (file.readUInt32LE(0) !== MAGIC) throw new Error(`replorigin_checkpoint has magic 0x${file.readUInt32LE(0).toString(16)}, expected 0x${MAGIC.toString(16)}`);
  const crc = crc32c(file.subarray(0, file.length - 4));
  if (crc !== file.readUInt32LE(file.length - 4)) throw new Error(`replorigin_checkpoint has checksum ${file.readUInt32LE(file.length - 4)}, computed ${crc}`);
  const states: ReplicationOriginState[] = [];
  for (let at = 4; at < file.length - 4; at += STATE_SIZE) states.push({ id: file.readUInt16LE(at), remoteLsn: file.readBigUInt64LE(at + 8) });
  return states;
}
