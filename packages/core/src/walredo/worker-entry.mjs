// The redo worker's entry point: worker threads start without the parent's TypeScript loader,
// so this registers tsx in the thread and then loads the worker itself.
import { register } from "tsx/esm/api";

register();
await import("./worker.ts");
