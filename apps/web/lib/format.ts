// Display helpers. Deterministic (no locale), so server and client renders agree.

export function formatUptime(totalSeconds: number): string {
  const s = Math.max(0, Math.floor(totalSeconds));
  const days = Math.floor(s / 86_400);
  const hours = Math.floor((s % 86_400) / 3_600);
  const minutes = Math.floor((s % 3_600) / 60);
  const seconds = s % 60;
  if (days > 0) return `${days}d ${hours}h ${minutes}m`;
  if (hours > 0) return `${hours}h ${minutes}m ${seconds}s`;
  if (minutes > 0) return `${minutes}m ${seconds}s`;
  return `${seconds}s`;
}

/** "2026-11-25 13:24:48 UTC" */
export function formatTimestamp(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

const TWO_32 = 2 ** 32;

/** A WAL byte position as PostgreSQL prints an LSN: "16/B374D848". */
export function formatLsnBytes(bytes: number): string {
  const n = Math.max(0, Math.floor(bytes));
  const hi = Math.floor(n / TWO_32);
  const lo = n - hi * TWO_32;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** "0 B", "812 B", "1.4 MiB", "12 GiB" */
export function formatBytes(bytes: number): string {
  let v = Math.abs(bytes);
  let unit = 0;
  while (v >= 1024 && unit < BYTE_UNITS.length - 1) {
    v /= 1024;
    unit++;
  }
  const digits = unit === 0 || v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${bytes < 0 ? "-" : ""}${v.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** "13:24:48" (UTC) */
export function formatClock(ms: number): string {
  return new Date(ms).toISOString().slice(11, 19);
}
