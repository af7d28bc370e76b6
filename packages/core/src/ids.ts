// Tenant and timeline ids are 32 lowercase hex characters (128 bits), like Neon's.
import { randomBytes } from "node:crypto";

export const ID_PATTERN = /^[0-9a-f]{32}$/;

export function generateId(): string {
  return randomBytes(16).toString("hex");
}

export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id);
}
