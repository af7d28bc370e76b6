// Password authentication for the replication client: MD5 and SCRAM-SHA-256 (RFC 5802/7677, no
// channel binding) computed with node:crypto. connection.ts drives the message exchange; this file
// only turns server challenges into client answers.
import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from "node:crypto";

/** `md5` + md5(md5(password + user) + salt), as the server expects for AuthenticationMD5Password. */
export function md5PasswordResponse(user: string, password: string, salt: Buffer): string {
  const inner = createHash("md5").update(password + user).digest("hex");
  return "md5" + createHash("md5").update(inner).update(salt).digest("hex");
}

export const SCRAM_MECHANISM = "SCRAM-SHA-256";

/** One SCRAM-SHA-256 exchange: clientFirst() → clientFinal(serverFirst) → verifyServerFinal(). */
export class ScramSession {
  private readonly clientNonce: string;
  private readonly clientFirstBare: string;
  private serverSignature?: Buffer;

  /** `user` is normally empty: PostgreSQL takes the name from the startup packet and ignores this one. */
  constructor(
    private readonly password: string,
    nonce?: string,
    user = "",
  ) {
    this.clientNonce = nonce ?? randomBytes(18).toString("base64");
    this.clientFirstBare = `n=${user.replace(/=/g, "=3D").replace(/,/g, "=2C")},r=${this.clientNonce}`;
  }

  /** client-first-message: no channel binding ("n,,"). */
  clientFirst(): string {
    return `n,,${this.clientFirstBare}`;
  }

  clientFinal(serverFirst: string): string {
    const attrs = parseAttributes(serverFirst);
    const nonce = attrs.get("r");
    const salt = attrs.get("s");
    const iterations = Number(attrs.get("i"));
    if (!nonce || !salt || !Number.isInteger(iterations) || iterations <= 0) {
      throw new Error(`SCRAM: malformed server-first-message "${serverFirst}"`);
    }
    if (!nonce.startsWith(this.clientNonce)) throw new Error("SCRAM: server nonce does not extend the client nonce");
    const saltedPassword = pbkdf2Sync(this.password.normalize("NFKC"), Buffer.from(salt, "base64"), iterations, 32, "sha256");
    const clientKey = hmac(saltedPassword, "Client Key");
    const storedKey = createHash("sha256").update(clientKey).digest();
    const withoutProof = `c=biws,r=${nonce}`; // biws = base64("n,,")
    const authMessage = `${this.clientFirstBare},${serverFirst},${withoutProof}`;
    const clientSignature = hmac(storedKey, authMessage);
    const proof = Buffer.alloc(clientKey.length);
    for (let i = 0; i < proof.length; i++) proof[i] = clientKey[i] ^ clientSignature[i];
    this.serverSignature = hmac(hmac(saltedPassword, "Server Key"), authMessage);
    return `${withoutProof},p=${proof.toString("base64")}`;
  }

  /** Checks the server's signature so a server that doesn't know the password can't pretend. */
  verifyServerFinal(serverFinal: string): void {
    const attrs = parseAttributes(serverFinal);
    if (attrs.has("e")) throw new Error(`SCRAM: server reported error "${attrs.get("e")}"`);
    const v = attrs.get("v");
    if (!v || !this.serverSignature) throw new Error("SCRAM: malformed server-final-message");
    const got = Buffer.from(v, "base64");
    if (got.length !== this.serverSignature.length || !timingSafeEqual(got, this.serverSignature)) {
      throw new Error("SCRAM: server signature does not match (server does not know the password?)");
    }
  }
}

function hmac(key: Buffer, data: string): Buffer {
  return createHmac("sha256", key).update(data).digest();
}

function parseAttributes(msg: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of msg.split(",")) {
    const eq = part.indexOf("=");
    if (eq > 0) out.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return out;
}
