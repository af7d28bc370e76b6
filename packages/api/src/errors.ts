// Domain errors raised by services; the tRPC layer maps them to NOT_FOUND / CONFLICT / BAD_REQUEST.
export class NotFoundError extends Error {}
export class ConflictError extends Error {}
export class InvalidInputError extends Error {}
/** The external primary refused or failed a request (unreachable, bad credentials, unsuitable). */
export class PrimaryRequestError extends Error {}
export class TimeoutError extends Error {}
/** A stored record type this version cannot replay. */
export class NotImplementedError extends Error {}

/** A unique-constraint violation from either metadata backend. */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: string }).code === "P2002" || /unique constraint/i.test(String((err as Error).message ?? ""));
}
