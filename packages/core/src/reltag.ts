// PostgreSQL's names for what a page belongs to: a relation file (tablespace/database/relfilenode)
// and one of its forks.
export interface RelTag {
  spcNode: number;
  dbNode: number;
  relNode: number;
}

export const enum ForkNumber {
  Main = 0,
  Fsm = 1,
  VisibilityMap = 2,
  Init = 3,
}

export const FORK_NAMES = ["main", "fsm", "vm", "init"] as const;

export type BlockNumber = number;

export const BLCKSZ = 8192;

export function formatRelTag(rel: RelTag): string {
  return `${rel.spcNode}/${rel.dbNode}/${rel.relNode}`;
}

export function parseRelTag(text: string): RelTag {
  const parts = text.split("/");
  if (parts.length !== 3 || parts.some((p) => !/^\d+$/.test(p))) {
    throw new RangeError(`invalid relation "${text}": expected SPC/DB/REL, e.g. 1663/5/16384`);
  }
  const [spcNode, dbNode, relNode] = parts.map(Number);
  return { spcNode, dbNode, relNode };
}

export function parseForkName(name: string): ForkNumber {
  const index = FORK_NAMES.indexOf(name as (typeof FORK_NAMES)[number]);
  if (index < 0) throw new RangeError(`invalid fork "${name}": expected one of ${FORK_NAMES.join(", ")}`);
  return index as ForkNumber;
}
