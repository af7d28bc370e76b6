// Test and benchmark helpers (not part of the engine).
export * from "./pgcluster.ts";
export * from "./crash.ts";
export { runConsistencyOracle, relationKinds, compareDataDirectory, type OracleReport, type OnDiskReport } from "../redo/oracle.ts";
