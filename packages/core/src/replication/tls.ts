// TLS to a primary, as libpq's sslmode asks for it: an SSLRequest on the fresh connection, then
// a TLS session over the same socket when the server answers 'S'. `prefer` falls back to
// plaintext on 'N'; `require` and `verify-*` fail then. `require` does not check the server's
// certificate; `verify-ca` checks its chain (against `sslrootcert`, or the system's CAs);
// `verify-full` also its host name.
import { readFileSync } from "node:fs";
import net from "node:net";
import tls from "node:tls";

export type SslMode = "prefer" | "require" | "verify-ca" | "verify-full";

export interface TlsOptions {
  mode: SslMode;
  /** PEM file of the CA(s) that sign the server's certificate (libpq's sslrootcert) */
  rootCert?: string;
}

/** SSLRequest: length 8, then the magic request code 1234/5679. */
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

export class TlsNegotiationError extends Error {}

/**
 * Asks the server on `socket` (connected, nothing sent yet, no reader attached) for TLS. Resolves
 * with the TLS socket, or with `socket` itself when the server declines and the mode allows it.
 */
export function negotiateTls(socket: net.Socket, host: string, options: TlsOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    socket.once("error", onError);
    socket.once("data", (answer: Buffer) => {
      socket.off("error", onError);
      if (answer.length !== 1 || (answer[0] !== 0x53 && answer[0] !== 0x4e)) {
        reject(new TlsNegotiationError(`the server answered the SSL request with ${answer.length} unexpected bytes`));
        return;
      }
      if (answer[0] === 0x4e) {
        // 'N': the server has no TLS
        if (options.mode === "prefer") resolve(socket);
        else reject(new TlsNegotiationError(`the server does not support TLS, and sslmode=${options.mode} requires it`));
        return;
      }
      const verify = options.mode === "verify-ca" || options.mode === "verify-full";
      let ca: Buffer | undefined;
      try {
        ca = options.rootCert ? readFileSync(options.rootCert) : undefined;
      } catch (err) {
        reject(new TlsNegotiationError(`cannot read sslrootcert ${options.rootCert}: ${(err as Error).message}`));
        return;
      }
      const secure = tls.connect({
        socket,
        host, // the name verify-full checks the certificate against
        ca,
        rejectUnauthorized: verify,
        // verify-ca checks the chain only; verify-full (the default check) the host name too
        checkServerIdentity: options.mode === "verify-full" ? tls.checkServerIdentity : () => undefined,
        servername: host.startsWith("/") || net.isIP(host) !== 0 ? undefined : host, // (SNI takes host names only)
      });
      secure.once("secureConnect", () => {
        secure.off("error", onTlsError);
        resolve(secure);
      });
      const onTlsError = (err: Error) => reject(new TlsNegotiationError(`TLS with the server failed: ${err.message}`));
      secure.once("error", onTlsError);
    });
    socket.write(SSL_REQUEST);
  });
}
