// Public API of the physical-replication client: connect to a primary, identify it, manage physical
// slots, stream WAL (walreceiver) and take a base backup (initial import).
export { parsePostgresUrl, ReplicationConnection } from "./connection.ts";
export type { ConnectOptions, PrimaryTarget, QueryResult, ReplicationSlotInfo, SystemIdentity } from "./connection.ts";
export { ReplicationStream } from "./stream.ts";
export type { StandbyStatus, StartReplicationOptions, TimelineSwitch, XLogData } from "./stream.ts";
export { baseBackup, UnsupportedTablespaceError } from "./basebackup.ts";
export type { BackupEntry, BackupFileHandler, BaseBackupOptions, BaseBackupResult, TablespaceInfo } from "./basebackup.ts";
export { readTar, TarFormatError } from "./tar.ts";
export type { TarEntry, TarEntryHandler, TarEntryType } from "./tar.ts";
export { PrimaryConnectError, PrimaryError, ReplicationStreamClosed } from "./errors.ts";
export type { ServerMessageFields, StreamCloseReason } from "./errors.ts";
export { ProtocolViolation } from "./protocol.ts";
export { checkOnHistory, parseTimelineHistory, TimelineHistoryError, timelineOfLsn } from "./timeline-history.ts";
export type { TimelineHistoryEntry } from "./timeline-history.ts";
