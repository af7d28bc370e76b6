export * from "./lsn.ts";
export * from "./reltag.ts";
export * from "./ids.ts";
export * from "./failpoints.ts";
export * from "./storage/timeline-store.ts";
export * from "./tenant/tenant-storage.ts";
export * from "./tenant/tenant-manager.ts";
export * from "./wal/index.ts";
