import { execFileSync } from "node:child_process";
import { appendFileSync, chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatLsn, parseLsn } from "../lsn.ts";
import { freePort, PgCluster, writePostgresFile } from "../testing/pgcluster.ts";
import { importFromPrimary } from "../ingest/import-primary.ts";
import { TimelineStore } from "../storage/timeline-store.ts";
import { PageReader } from "../timeline/page-reader.ts";
import { ReplicationConnection } from "./connection.ts";
import { PrimaryConnectError, PrimaryError } from "./errors.ts";
import { ProtocolViolation } from "./protocol.ts";

describe("replication connection", () => {
  let cluster: PgCluster;
  const target = () => ({ host: cluster.host, port: cluster.port, user: "postgres" });

  /** Rewrites pg_hba.conf: replication connections use `method`, normal SQL stays trust. */
  async function useReplicationAuth(method: string, passwordEncryption: string, password: string) {
    writePostgresFile(
      path.join(cluster.dataDir, "pg_hba.conf"),
      `host replication all 127.0.0.1/32 ${method}\nhost all all 127.0.0.1/32 trust\nlocal all all trust\n`,
    );
    await cluster.sql(`SET password_encryption = '${passwordEncryption}'; ALTER USER postgres PASSWORD '${password}'`);
    await cluster.sql("SELECT pg_reload_conf()");
    await new Promise((r) => setTimeout(r, 300)); // the postmaster reloads pg_hba asynchronously
  }

  beforeAll(async () => {
    cluster = await PgCluster.start();
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it("connects with trust and identifies the system like pg_control_system() and the WAL flush position", async () => {
    const before = parseLsn((await cluster.sql<{ l: string }>("SELECT pg_current_wal_flush_lsn()::text AS l"))[0].l);
    const conn = await ReplicationConnection.connect(cluster.connectionString(), { applicationName: "strata-test" });
    try {
      expect(conn.authMethod).toBe("trust");
      const id = await conn.identifySystem();
      const after = parseLsn((await cluster.sql<{ l: string }>("SELECT pg_current_wal_flush_lsn()::text AS l"))[0].l);
      const [{ system_identifier }] = await cluster.sql<{ system_identifier: string }>("SELECT system_identifier::text FROM pg_control_system()");
      expect(id.systemId).toBe(system_identifier);
      expect(id.timeline).toBe(1);
      expect(id.dbName).toBeNull();
      expect(id.xlogPos >= before && id.xlogPos <= after).toBe(true);
      const rows = await cluster.sql<{ application_name: string; backend_type: string }>(
        "SELECT application_name, backend_type FROM pg_stat_activity WHERE backend_type = 'walsender'",
      );
      expect(rows).toEqual([{ application_name: "strata-test", backend_type: "walsender" }]);
      expect(await conn.showSetting("wal_level")).toBe("replica");
      const q = await conn.query("SHOW max_wal_senders");
      expect(q).toEqual({ command: "SHOW", columns: ["max_wal_senders"], rows: [["10"]] });
    } finally {
      await conn.close();
    }
  });

  it("connects through the server's Unix socket when the host is a directory, as libpq does", async () => {
    for (const url of [`postgresql://postgres@/postgres?host=${cluster.baseDir}&port=${cluster.port}`, `postgresql://postgres@${encodeURIComponent(cluster.baseDir)}:${cluster.port}/postgres`]) {
      const conn = await ReplicationConnection.connect(url);
      try {
        const [{ system_identifier }] = await cluster.sql<{ system_identifier: string }>("SELECT system_identifier::text FROM pg_control_system()");
        expect((await conn.identifySystem()).systemId, url).toBe(system_identifier);
        const [{ client_addr }] = await cluster.sql<{ client_addr: string | null }>("SELECT client_addr FROM pg_stat_activity WHERE backend_type = 'walsender'");
        expect(client_addr, url).toBeNull(); // a local (socket) connection
      } finally {
        await conn.close();
      }
      await new Promise((resolve) => setTimeout(resolve, 100)); // the walsender exits
    }
    await expect(ReplicationConnection.connect(`postgresql://postgres@/postgres?host=${cluster.baseDir}-nowhere&port=${cluster.port}`)).rejects.toThrow(PrimaryConnectError);
  });

  it("creates, re-ensures, reads and drops physical slots", async () => {
    const conn = await ReplicationConnection.connect(target());
    try {
      const created = await conn.ensurePhysicalSlot("strata_conn_test");
      expect(created.created).toBe(true);
      expect(created.slotType).toBe("physical");
      expect(created.restartLsn).not.toBeNull();
      const again = await conn.ensurePhysicalSlot("strata_conn_test");
      expect(again).toEqual({ ...created, created: false });
      const err = await conn.createPhysicalSlot("strata_conn_test").catch((e) => e);
      expect(err).toBeInstanceOf(PrimaryError);
      expect(err.code).toBe("42710");
      const rows = await cluster.sql<{ restart_lsn: string; slot_type: string }>(
        "SELECT restart_lsn::text, slot_type FROM pg_replication_slots WHERE slot_name = 'strata_conn_test'",
      );
      expect(rows).toEqual([{ restart_lsn: formatLsn(created.restartLsn!), slot_type: "physical" }]);
      const temp = await conn.createPhysicalSlot("strata_temp", { temporary: true, reserveWal: false });
      expect(temp.restartLsn).toBeNull();
      await conn.dropSlot("strata_conn_test");
      expect(await conn.readReplicationSlot("strata_conn_test")).toBeNull();
      expect(await conn.identifySystem()).toMatchObject({ timeline: 1 }); // still usable after errors
    } finally {
      await conn.close();
    }
    expect(await cluster.sql("SELECT 1 FROM pg_replication_slots")).toEqual([]); // temporary slot went with the session
  });

  it("gives a clear error when nothing listens on the port", async () => {
    const port = await freePort();
    const err = await ReplicationConnection.connect({ host: "127.0.0.1", port, user: "postgres" }).catch((e) => e);
    expect(err).toBeInstanceOf(PrimaryConnectError);
    expect(err.message).toBe(`cannot connect to primary at 127.0.0.1:${port}: connection refused`);
    expect(err.errno).toBe("ECONNREFUSED");
  });

  it("fails with a clear error, not a hang, when the server's byte stream is not the protocol", async () => {
    // a server that answers the startup packet with a frame whose length field is impossible
    const server = net.createServer((socket) => socket.once("data", () => socket.write(Buffer.from([0x52, 0, 0, 0, 2, 0, 0, 0, 0]))));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const err = await ReplicationConnection.connect({ host: "127.0.0.1", port, user: "postgres" }, { connectTimeoutMs: 20_000 }).catch((e) => e);
      expect(err).toBeInstanceOf(ProtocolViolation);
      expect(err.message).toMatch(/invalid length 2 for message type "R"/);
    } finally {
      server.close();
    }
  });

  it("authenticates with SCRAM-SHA-256, and a wrong password fails with the server's message", async () => {
    await useReplicationAuth("scram-sha-256", "scram-sha-256", "s3cret,=x");
    const conn = await ReplicationConnection.connect({ ...target(), password: "s3cret,=x" });
    expect(conn.authMethod).toBe("scram-sha-256");
    expect((await conn.identifySystem()).timeline).toBe(1);
    await conn.close();

    const url = `postgresql://postgres:${encodeURIComponent("s3cret,=x")}@${cluster.host}:${cluster.port}/postgres`;
    const viaUrl = await ReplicationConnection.connect(url);
    expect(viaUrl.authMethod).toBe("scram-sha-256");
    await viaUrl.close();

    const err = await ReplicationConnection.connect({ ...target(), password: "wrong" }).catch((e) => e);
    expect(err).toBeInstanceOf(PrimaryError);
    expect(err.code).toBe("28P01");
    expect(err.message).toBe('password authentication failed for user "postgres"');

    const noPassword = await ReplicationConnection.connect(target()).catch((e) => e);
    expect(noPassword).toBeInstanceOf(PrimaryConnectError);
    expect(noPassword.message).toMatch(/requires SCRAM-SHA-256 password authentication for user "postgres", but no password was given/);
  });

  it("authenticates with md5 (md5-stored password) and cleartext password", async () => {
    await useReplicationAuth("md5", "md5", "md5pass");
    const conn = await ReplicationConnection.connect({ ...target(), password: "md5pass" });
    expect(conn.authMethod).toBe("md5");
    await conn.close();
    const err = await ReplicationConnection.connect({ ...target(), password: "nope" }).catch((e) => e);
    expect(err).toBeInstanceOf(PrimaryError);
    expect(err.message).toMatch(/authentication failed for user "postgres"/);

    await useReplicationAuth("password", "scram-sha-256", "plain");
    const plain = await ReplicationConnection.connect({ ...target(), password: "plain" });
    expect(plain.authMethod).toBe("password");
    await plain.close();
  });

  it("says when pg_hba.conf has no replication line", async () => {
    writePostgresFile(path.join(cluster.dataDir, "pg_hba.conf"), "host all all 127.0.0.1/32 trust\nlocal all all trust\n");
    await cluster.sql("SELECT pg_reload_conf()");
    await new Promise((r) => setTimeout(r, 300));
    const err = await ReplicationConnection.connect(target()).catch((e) => e);
    expect(err).toBeInstanceOf(PrimaryError);
    expect(err.code).toBe("28000");
    expect(err.message).toMatch(/^primary does not allow replication connections from this host\/user .*no pg_hba.conf entry for replication connection/);
  });
});

describe("primary without replication", () => {
  it("refuses a wal_level=minimal primary with a clear message", async () => {
    const cluster = await PgCluster.start({ settings: { wal_level: "minimal", max_wal_senders: 0 } });
    try {
      const err = await ReplicationConnection.connect({ host: cluster.host, port: cluster.port, user: "postgres" }).catch((e) => e);
      expect(err).toBeInstanceOf(PrimaryError);
      expect(err.code).toBe("53300");
      expect(err.message).toMatch(/^primary does not allow replication connections \(max_wal_senders = 0.*\): number of requested standby connections exceeds max_wal_senders \(currently 0\)/);
    } finally {
      await cluster.stop();
    }
  });
});

describe("replication connection over TLS", () => {
  let cluster: PgCluster;
  let plain: PgCluster;
  let certFile: string;

  beforeAll(async () => {
    [cluster, plain] = await Promise.all([PgCluster.start(), PgCluster.start()]);
    // a self-signed certificate for "localhost" only (not for 127.0.0.1)
    certFile = path.join(cluster.dataDir, "server.crt");
    const keyFile = path.join(cluster.dataDir, "server.key");
    execFileSync("openssl", ["req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", keyFile, "-out", certFile], { stdio: "ignore" });
    for (const file of [certFile, keyFile]) writePostgresFile(file, readFileSync(file, "utf8"));
    chmodSync(keyFile, 0o600);
    appendFileSync(path.join(cluster.dataDir, "postgresql.conf"), "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
    await cluster.sql("SELECT pg_reload_conf()");
    await new Promise((resolve) => setTimeout(resolve, 300)); // the postmaster reloads asynchronously
  });
  afterAll(async () => {
    await Promise.all([cluster?.stop(), plain?.stop()]);
  });

  /** Whether the walsender of `conn` runs over TLS, as the server sees it. */
  async function encrypted(server: PgCluster): Promise<boolean> {
    const rows = await server.sql<{ ssl: boolean }>("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.backend_type = 'walsender'");
    expect(rows.length).toBe(1);
    return rows[0].ssl;
  }

  async function connected<T>(url: string, use: (conn: ReplicationConnection) => Promise<T>): Promise<T> {
    const conn = await ReplicationConnection.connect(url);
    try {
      return await use(conn);
    } finally {
      await conn.close();
      await new Promise((resolve) => setTimeout(resolve, 100)); // the walsender exits
    }
  }

  it("encrypts when sslmode asks for it, checks the certificate for verify-ca and verify-full, and falls back to plaintext only for prefer", async () => {
    const at = (host: string, params: string) => `postgresql://postgres@${host}:${cluster.port}/postgres?${params}`;
    for (const url of [at("127.0.0.1", "sslmode=require"), at("127.0.0.1", "sslmode=prefer"), at("127.0.0.1", `sslmode=verify-ca&sslrootcert=${certFile}`), at("localhost", `sslmode=verify-full&sslrootcert=${certFile}`)]) {
      await connected(url, async (conn) => {
        expect((await conn.identifySystem()).timeline, url).toBe(1);
        expect(await encrypted(cluster), url).toBe(true);
      });
    }
    await connected(at("127.0.0.1", "sslmode=disable"), async () => expect(await encrypted(cluster)).toBe(false));
    await connected(cluster.connectionString(), async () => expect(await encrypted(cluster)).toBe(false)); // no sslmode: plaintext
    // the certificate is for "localhost", and signed by no CA the system knows
    await expect(ReplicationConnection.connect(at("127.0.0.1", `sslmode=verify-full&sslrootcert=${certFile}`))).rejects.toThrow(/TLS with the server failed: .*(localhost|altnames|IP)/i);
    await expect(ReplicationConnection.connect(at("localhost", "sslmode=verify-ca"))).rejects.toThrow(/TLS with the server failed: .*self.signed/i);
    await expect(ReplicationConnection.connect(at("localhost", "sslmode=verify-ca&sslrootcert=/nonexistent.crt"))).rejects.toThrow(/cannot read sslrootcert/);
    // a server without TLS
    await expect(ReplicationConnection.connect(`${plain.connectionString()}?sslmode=require`)).rejects.toThrow(/does not support TLS, and sslmode=require requires it/);
    await connected(`${plain.connectionString()}?sslmode=prefer`, async () => expect(await encrypted(plain)).toBe(false));
    await expect(ReplicationConnection.connect(`${plain.connectionString()}?sslmode=sometimes`)).rejects.toThrow(/unknown sslmode "sometimes"/);
    // as libpq: a Unix socket carries no TLS, whatever sslmode says
    await connected(`postgresql://postgres@/postgres?host=${cluster.baseDir}&port=${cluster.port}&sslmode=verify-full`, async () => expect(await encrypted(cluster)).toBe(false));
  });

  it("streams a whole base backup over TLS into a store", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "strata-tls-import-"));
    const store = await TimelineStore.open(dir);
    try {
      await cluster.sql("CREATE TABLE bulk AS SELECT g, md5(g::text) AS h FROM generate_series(1, 100000) g");
      const imported = await importFromPrimary(store, `postgresql://postgres@localhost:${cluster.port}/postgres?sslmode=verify-full&sslrootcert=${certFile}`, "strata_tls");
      expect(imported.bytes).toBeGreaterThan(10 * 1024 * 1024);
      const [{ size }] = await cluster.sql<{ size: string }>("SELECT pg_relation_size('bulk')::text AS size");
      const reader = new PageReader(store);
      const [{ db, node }] = await cluster.sql<{ db: number; node: number }>("SELECT (SELECT oid FROM pg_database WHERE datname = current_database()) AS db, pg_relation_filenode('bulk') AS node");
      expect(await reader.relSize({ spcNode: 1663, dbNode: db, relNode: node }, 0, imported.endLsn)).toBe(Number(size) / 8192);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
