// Test and benchmark helpers (not part of the engine).
export * from "./pgcluster.ts";
