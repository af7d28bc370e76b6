import { describe, expect, it } from "vitest";
import { redactPrimaryUrl } from "./redact.ts";

describe("primary URL shown by the API", () => {
  it("keeps everything but the password, wherever the URL carries it", () => {
    expect(redactPrimaryUrl("postgresql://strata:s3cr%3At@db.example:5432/postgres")).toBe("postgresql://strata:***@db.example:5432/postgres");
    expect(redactPrimaryUrl("postgres://strata:pw@127.0.0.1/postgres?sslmode=require&password=other")).toBe("postgres://strata:***@127.0.0.1/postgres?sslmode=require&password=***");
    expect(redactPrimaryUrl("postgresql://strata@/postgres?host=/run/postgresql&password=x&port=5433")).toBe("postgresql://strata@/postgres?host=/run/postgresql&password=***&port=5433");
    expect(redactPrimaryUrl("postgresql://strata@127.0.0.1:5432/postgres")).toBe("postgresql://strata@127.0.0.1:5432/postgres");
    expect(redactPrimaryUrl("postgresql://127.0.0.1:5432/db?user=a")).toBe("postgresql://127.0.0.1:5432/db?user=a");
  });
});
