// The end of a log file, read from its end: an endpoint's postgres log grows for as long as it runs.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

const FIRST_WINDOW = 64 * 1024;
const MAX_WINDOW = 4 * 1024 * 1024;

/** The last `count` lines of a text file, reading no more of its end than they need (up to MAX_WINDOW). */
export function tailLines(file: string, count: number): string[] {
  const fd = openSync(file, "r");
  try {
    const size = fstatSync(fd).size;
    let window = Math.min(size, FIRST_WINDOW);
    for (;;) {
      const buf = Buffer.alloc(window);
      readSync(fd, buf, 0, window, size - window);
      const lines = buf.toString("utf8").split("\n");
      if (lines.at(-1) === "") lines.pop();
      // the window's first line may be cut, unless it starts the file
      if (lines.length > count || window === size || window >= MAX_WINDOW) return lines.slice(window === size ? -count : Math.max(1, lines.length - count));
      window = Math.min(size, window * 4);
    }
  } finally {
    closeSync(fd);
  }
}

