// PostgreSQL's data page checksum (storage/checksum_impl.h): FNV-1a-like mixing over 32 parallel
// lanes, folded and mixed with the block number. Pages rebuilt by redo carry whatever checksum
// their last image had, so the full backup stamps a fresh one on every page when the cluster
// has data checksums (pg_control data_checksum_version != 0), as PostgreSQL does on every write.
import { endianness } from "node:os";
import { BLCKSZ } from "../reltag.ts";

const N_SUMS = 32;
const FNV_PRIME = 16777619;
const BASE_OFFSETS = [
  0x5b1f36e9, 0xb8525960, 0x02ab50aa, 0x1de66d2a, 0x79ff467a, 0x9bb9f8a3, 0x217e7cd2, 0x83e13d2c,
  0xf8d4474f, 0xe39eb970, 0x42c6ae16, 0x993216fa, 0x7b093b5d, 0x98daff3c, 0xf718902a, 0x0b1c9cdb,
  0xe58f764b, 0x187636bc, 0x5d7b3bb1, 0xe73de7de, 0x92bec979, 0xcca6c0b2, 0x304a0979, 0x85aa43d4,
  0x783125bb, 0x6ca8eaa2, 0xe407eac6, 0x4b5cfc3e, 0x9fbf8c76, 0x15ca20be, 0xf2ca9fd3, 0x959bd756,
];
const PD_CHECKSUM_OFFSET = 8;
const PD_UPPER_OFFSET = 14;

const sums = new Uint32Array(N_SUMS);
const LITTLE_ENDIAN = endianness() === "LE";

const mix = (sum: number, value: number): number => {
  const tmp = (sum ^ value) >>> 0;
  return (Math.imul(tmp, FNV_PRIME) ^ (tmp >>> 17)) >>> 0;
};

/** pg_checksum_page: the checksum of `page` as block `blockNumber` of its relation fork. */
export function pageChecksum(page: Buffer, blockNumber: number): number {
  if (page.length !== BLCKSZ) throw new RangeError(`page is ${page.length} bytes, expected ${BLCKSZ}`);
  sums.set(BASE_OFFSETS);
  // a word view when the page is aligned in its ArrayBuffer (host order; PostgreSQL's too)
  const words = LITTLE_ENDIAN && page.byteOffset % 4 === 0 ? new Uint32Array(page.buffer, page.byteOffset, BLCKSZ / 4) : undefined;
  const checksumWord = PD_CHECKSUM_OFFSET / 4; // pd_checksum is the low half of word 2 (little-endian)
  for (let i = 0; i < BLCKSZ / 4; i += N_SUMS) {
    for (let j = 0; j < N_SUMS; j++) {
      let value = words ? words[i + j] : page.readUInt32LE((i + j) * 4);
      if (i + j === checksumWord) value = (value & 0xffff0000) >>> 0; // computed with pd_checksum = 0
      sums[j] = mix(sums[j], value);
    }
  }
  let result = 0;
  for (let round = 0; round < 2; round++) for (let j = 0; j < N_SUMS; j++) sums[j] = mix(sums[j], 0);
  for (let j = 0; j < N_SUMS; j++) result = (result ^ sums[j]) >>> 0;
  result = (result ^ blockNumber) >>> 0;
  return (result % 65535) + 1;
}

/** PageSetChecksumInplace: stamps the checksum, except on new (all-zero header) pages. */
export function setPageChecksum(page: Buffer, blockNumber: number): void {
  if (page.readUInt16LE(PD_UPPER_OFFSET) === 0) return;
  page.writeUInt16LE(pageChecksum(page, blockNumber), PD_CHECKSUM_OFFSET);
}
