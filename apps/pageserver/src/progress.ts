// One-line progress display for long CLI work, redrawn in place on a terminal.

/** "[#####-----]  48%  123.4 / 256.0 MB  41.2 MB/s" (no bar and percentage when the total is unknown). */
export function formatProgress(bytes: number, totalBytes: number | null, elapsedMs: number, width = 24): string {
  const mb = (n: number) => (n / 1048576).toFixed(1);
  const rate = `${mb(bytes / Math.max(0.001, elapsedMs / 1000))} MB/s`;
  if (!totalBytes || totalBytes <= 0) return `${mb(bytes)} MB  ${rate}`;
  const fraction = Math.min(1, bytes / totalBytes);
  const filled = Math.round(fraction * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.floor(fraction * 100)).padStart(3)}%  ${mb(bytes)} / ${mb(totalBytes)} MB  ${rate}`;
}

/** Redraws `line` on stderr when it is a terminal; otherwise does nothing (logs stay clean). */
export function drawProgress(line: string): void {
  if (process.stderr.isTTY) process.stderr.write(`\r${line}\x1b[K`);
}

export function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write("\r\x1b[K");
}
