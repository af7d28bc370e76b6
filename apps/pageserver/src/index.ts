export { startPageserver, type PageserverOptions, type RunningPageserver } from "./pageserver.ts";
