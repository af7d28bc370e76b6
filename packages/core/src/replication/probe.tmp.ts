import { PgCluster } from "../testing/pgcluster.ts";
import { ReplicationConnection } from "./index.ts";
import { message } from "./protocol.ts";
const c = await PgCluster.start();
try {
  const conn = await ReplicationConnection.connect({ host: c.host, port: c.port, user: "postgres" });
  conn.acquire("x");
  conn.write(message("Q").cstring("BASE_BACKUP (LABEL 'x', CHECKPOINT 'fast', WAL false, MANIFEST 'no')").end());
  const counts: Record<string, number> = {};
  const firstBytes: Record<string, number> = {};
  for (;;) {
    const f = await conn.readFrame();
    counts[f.type] = (counts[f.type] ?? 0) + 1;
    if (f.type === "d") { const k = String.fromCharCode(f.body[0]); firstBytes[k] = (firstBytes[k] ?? 0) + 1; }
    if (f.type === "Z") break;
  }
  console.log(counts, firstBytes);
  conn.destroy();
} finally { await c.stop(); }
