// Changes Strata derives at ingest where PostgreSQL's redo touches a page the record does not
// reference (storage/values.ts DerivedKind): CLOG status bits, visibility-map bit clears and
// truncation, multixact offsets and members, the FSM tail after a truncation, and commit timestamps.
import { DerivedKind } from "../storage/values.ts";
import { COMMIT_TS_ENTRY_SIZE, COMMIT_TS_XACTS_PER_PAGE } from "../ingest/records.ts";
import { isNewPage, pageInit } from "./page.ts";
import { readU16, writeU32 } from "../bytes.ts";

const CLOG_XACTS_PER_PAGE = 8192 * 4;
const HEAPBLOCKS_PER_VM_PAGE = (8192 - 24) * 4;
const VM_CONTENTS = 24; // MAXALIGN(SizeOfPageHeaderData)
const MULTIXACT_OFFSETS_PER_PAGE = 8192 / 4;
const MEMBERS_PER_GROUP = 4;
const GROUP_SIZE = 20; // 4 flag bytes + 4 xids
const GROUPS_PER_PAGE = Math.floor(8192 / GROUP_SIZE);
const FSM_NODES_PER_PAGE = 8192 - 24 - 4;
const FSM_NON_LEAF_NODES = 8192 / 2 - 1;
const FSM_NODES = 24 + 4; // fp_nodes after the page header and fp_next_slot

function initVmPageIfNew(page: Buffer) {
  // PageInit(page, BLCKSZ, 0), as vm_readbuf does for a new page
  if (isNewPage(page)) pageInit(page, 0);
}

/** Applies a derived change to `page` in place. `copyFrom` reads another page (FILE_COPY). */
export function applyDerived(page: Buffer, kind: DerivedKind, payload: Buffer): void {
  switch (kind) {
    case DerivedKind.ClogSetStatus: {
      const status = payload[0];
      for (let i = 1; i + 4 <= payload.length; i += 4) {
        const index = payload.readUInt32LE(i) % CLOG_XACTS_PER_PAGE;
        const byte = index >> 2;
        const shift = (index & 3) * 2;
        page[byte] = (page[byte] & ~(3 << shift)) | (status << shift);
      }
      return;
    }
    case DerivedKind.ClearVisibilityMapBits: {
      initVmPageIfNew(page);
      for (let i = 0; i + 5 <= payload.length; i += 5) {
        const index = payload.readUInt32LE(i) % HEAPBLOCKS_PER_VM_PAGE;
        const bits = payload[i + 4];
        const byte = VM_CONTENTS + (index >> 2);
        page[byte] &= ~(bits << ((index & 3) * 2));
      }
      return;
    }
    case DerivedKind.TruncateVisibilityMap: {
      const index = payload.readUInt32LE(0) % HEAPBLOCKS_PER_VM_PAGE;
      const byte = VM_CONTENTS + (index >> 2);
      page.fill(0, byte + 1, 8192);
      page[byte] &= (1 << ((index & 3) * 2)) - 1;
      return;
    }
    case DerivedKind.MultiXactOffset: {
      const mid = payload.readUInt32LE(0);
      writeU32(page, payload.readUInt32LE(4), (mid % MULTIXACT_OFFSETS_PER_PAGE) * 4);
      return;
    }
    case DerivedKind.MultiXactMembers: {
      const first = payload.readUInt32LE(0);
      const count = payload.readUInt32LE(4);
      for (let i = 0; i < count; i++) {
        const offset = (first + i) >>> 0;
        const group = Math.floor(offset / MEMBERS_PER_GROUP) % GROUPS_PER_PAGE;
        const slot = offset % MEMBERS_PER_GROUP;
        const base = group * GROUP_SIZE;
        writeU32(page, payload.readUInt32LE(8 + 8 * i), base + 4 + slot * 4);
        page[base + slot] = payload.readInt32LE(12 + 8 * i) & 0xff;
      }
      return;
    }
    case DerivedKind.ZeroFsmTail: {
      const firstSlot = payload.readUInt32LE(0);
      if (readU16(page, 14) === 0) return; // a new FSM page has nothing to clear
      const leaves = FSM_NODES_PER_PAGE - FSM_NON_LEAF_NODES;
      for (let slot = firstSlot; slot < leaves; slot++) page[FSM_NODES + FSM_NON_LEAF_NODES + slot] = 0;
      // rebuild the upper levels of the page's binary tree: each node holds its children's max
      for (let node = FSM_NON_LEAF_NODES - 1; node >= 0; node--) {
        const left = 2 * node + 1;
        const right = left + 1;
        const l = left < FSM_NODES_PER_PAGE ? page[FSM_NODES + left] : 0;
        const r = right < FSM_NODES_PER_PAGE ? page[FSM_NODES + right] : 0;
        page[FSM_NODES + node] = Math.max(l, r);
      }
      return;
    }
    case DerivedKind.CommitTsSet: {
      // TransactionIdSetCommitTs: the 10-byte entry (timestamp, then origin) of each xid
      for (let i = 10; i + 4 <= payload.length; i += 4) {
        const entry = (payload.readUInt32LE(i) % COMMIT_TS_XACTS_PER_PAGE) * COMMIT_TS_ENTRY_SIZE;
        payload.copy(page, entry, 0, COMMIT_TS_ENTRY_SIZE);
      }
      return;
    }
    case DerivedKind.CopyPageFrom:
      throw new Error("CopyPageFrom is resolved by the page reader");
  }
}
