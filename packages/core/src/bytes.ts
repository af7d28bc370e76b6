// Little-endian integers in byte arrays, without Buffer#readUInt16LE & co.: those validate the
// offset (and the value) on every call, which was about a tenth of replay and of WAL decoding.
// Nothing is checked here: callers pass offsets they have checked against the array's length (a
// page's checked line pointers and header fields, a record's announced lengths); a write truncates
// the value to the field's width.

export function readU16(bytes: Uint8Array, offset: number): number {
  return bytes[offset] | (bytes[offset + 1] << 8);
}
export function readU32(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0;
}
export function writeU16(bytes: Uint8Array, value: number, offset: number): void {
  bytes[offset] = value;
  bytes[offset + 1] = value >>> 8;
}
export function writeU32(bytes: Uint8Array, value: number, offset: number): void {
  bytes[offset] = value;
  bytes[offset + 1] = value >>> 8;
  bytes[offset + 2] = value >>> 16;
  bytes[offset + 3] = value >>> 24;
}
