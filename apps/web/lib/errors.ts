// Turns whatever a tRPC call threw into something a person can read: the tRPC code (NOT_FOUND,
// CONFLICT, BAD_REQUEST, BAD_GATEWAY when the pageserver is unreachable…) and a message.
import { TRPCClientError } from "@trpc/client";

export interface ReadableError {
  code?: string;
  message: string;
}

/** Codes that retrying will not fix. */
const CLIENT_ERROR_CODES = new Set(["BAD_REQUEST", "NOT_FOUND", "CONFLICT", "UNAUTHORIZED", "FORBIDDEN", "PARSE_ERROR"]);

export function errorCode(err: unknown): string | undefined {
  if (err instanceof TRPCClientError) return (err.data as { code?: string } | undefined)?.code;
  return undefined;
}

export function isClientError(err: unknown): boolean {
  const code = errorCode(err);
  return code !== undefined && CLIENT_ERROR_CODES.has(code);
}

export function describeError(err: unknown): ReadableError {
  const code = errorCode(err);
  const raw = err instanceof Error ? err.message : String(err);
  return { code, message: readableMessage(raw) };
}

/** Input validation errors arrive as a JSON list of zod issues; keep just their messages. */
function readableMessage(message: string): string {
  if (!message.trimStart().startsWith("[")) return message;
  try {
    const issues = JSON.parse(message) as Array<{ path?: unknown[]; message?: string }>;
    return issues
      .map((i) => (i.path && i.path.length > 0 ? `${i.path.join(".")}: ${i.message}` : String(i.message)))
      .join("; ");
  } catch {
    return message;
  }
}
