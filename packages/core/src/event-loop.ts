// Turns of the event loop for long work on the main thread. Awaiting a promise that is already
// resolved (a read the scan had buffered, a page replayed in place) runs the continuation as a
// microtask, before any socket is read: a loop over thousands of such steps holds the event loop
// for its whole length, and a compute's GetPage waits behind it.

/** the longest stretch of background work (a compaction pass) between turns of the event loop */
export const BACKGROUND_SLICE_MS = 2;

/** Resolves on a later turn of the event loop, after the I/O callbacks waiting now. */
export const turnEventLoop = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * For a loop of background work (a compaction pass): call the returned function between steps and
 * await what it returns (undefined: go on). It turns the event loop once `budgetMs` has passed
 * since the last turn, so other work waits at most about that long for the loop to let it through.
 */
export function turnsEvery(budgetMs: number): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    if (performance.now() - since < budgetMs) return undefined;
    return turnEventLoop().then(() => {
      since = performance.now();
    });
  };
}
