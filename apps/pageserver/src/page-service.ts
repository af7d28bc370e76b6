// The page service listener (PostgreSQL wire protocol, default 127.0.0.1:64000). It performs the
// startup handshake and answers queries; the pagestream/fullbackup commands are served by the
// page service in core once those land, until then each gets a clear "not supported" error.
import net from "node:net";
import type { Logger } from "pino";
import type { Metrics } from "./metrics.ts";

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, "latin1");
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

function errorResponse(code: string, text: string): Buffer {
  const fields = Buffer.concat([
    Buffer.from("SERROR\0"),
    Buffer.from(`C${code}\0`),
    Buffer.from(`M${text}\0`),
    Buffer.from([0]),
  ]);
  return message("E", fields);
}

const readyForQuery = message("Z", Buffer.from("I"));
const authOk = message("R", Buffer.from([0, 0, 0, 0]));

export function createPageServiceServer(opts: { logger: Logger; metrics: Metrics }) {
  const { logger, metrics } = opts;
  return net.createServer((socket) => {
    metrics.pageServiceConnections.inc();
    let buffered = Buffer.alloc(0);
    let started = false;
    socket.on("close", () => metrics.pageServiceConnections.dec());
    socket.on("error", (err) => logger.debug({ err }, "page service connection error"));
    socket.on("data", (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (!started) {
          if (buffered.length < 8) return;
          const length = buffered.readInt32BE(0);
          if (length < 8 || length > 10_000) {
            socket.end(errorResponse("08P01", `invalid startup packet length ${length}`));
            return;
          }
          if (buffered.length < length) return;
          const code = buffered.readInt32BE(4);
          buffered = buffered.subarray(length);
          if (code === 80877103 || code === 80877104) {
            socket.write("N"); // no SSL / GSS: the page service is loopback-only
            continue;
          }
          if (code !== 196608) {
            socket.end(errorResponse("08P01", `unsupported protocol version ${code >> 16}.${code & 0xffff}`));
            return;
          }
          started = true;
          socket.write(Buffer.concat([authOk, readyForQuery]));
          continue;
        }
        if (buffered.length < 5) return;
        const type = String.fromCharCode(buffered[0]);
        const length = buffered.readInt32BE(1);
        if (length < 4 || length > 64 * 1024 * 1024) {
          socket.end(errorResponse("08P01", `invalid message length ${length}`));
          return;
        }
        if (buffered.length < 1 + length) return;
        const body = buffered.subarray(5, 1 + length);
        buffered = buffered.subarray(1 + length);
        if (type === "X") {
          socket.end();
          return;
        }
        if (type === "Q") {
          const query = body.toString("utf8").replace(/\0$/, "").trim();
          const command = query.split(/\s+/)[0] ?? "";
          socket.write(Buffer.concat([errorResponse("0A000", `page service command "${command}" is not supported by this pageserver version`), readyForQuery]));
          continue;
        }
        socket.write(Buffer.concat([errorResponse("08P01", `unexpected message type "${type}"`), readyForQuery]));
      }
    });
  });
}
