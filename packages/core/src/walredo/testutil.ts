// Test helpers for the redo worker pool.
import { afterAll, beforeAll } from "vitest";
import { RedoPool } from "./pool.ts";

/**
 * A pool of two redo workers for the tests of the calling describe block, started before them
 * and closed after them (read `.pool` inside a test). It takes every chain of 4 versions or more,
 * a read alone too, so which chains go to a worker is known in advance.
 */
export function redoPoolForTests(): { readonly pool: RedoPool } {
  const holder = {} as { pool: RedoPool };
  beforeAll(async () => {
    holder.pool = new RedoPool(2, 4, false);
    await holder.pool.start();
  });
  afterAll(async () => {
    await holder.pool.close();
  });
  return holder;
}
