import { describe, expect, it } from "vitest";
import { formatProgress } from "./progress.ts";

describe("CLI progress line", () => {
  it("shows a bar, the percentage, sizes and rate when the total is known", () => {
    expect(formatProgress(64 * 1048576, 256 * 1048576, 2000, 8)).toBe("[##------]  25%  64.0 / 256.0 MB  32.0 MB/s");
  });

  it("caps at 100% when more arrives than estimated, and shows only size and rate without a total", () => {
    expect(formatProgress(300 * 1048576, 256 * 1048576, 1000, 4)).toBe("[####] 100%  300.0 / 256.0 MB  300.0 MB/s");
    expect(formatProgress(10 * 1048576, null, 4000)).toBe("10.0 MB  2.5 MB/s");
  });
});
