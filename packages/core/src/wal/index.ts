// Public API of the PostgreSQL 15 WAL decoder: stream reader -> record decoder -> FPI restore,
// plus the rmgr name table and pg_waldump-compatible formatting.
export * from "./crc32c.ts";
export * from "./errors.ts";
export * from "./record.ts";
export * from "./image.ts";
export * from "./pglz.ts";
export * from "./lz4.ts";
export * from "./reader.ts";
export * from "./rmgrs.ts";
export * from "./waldump.ts";
