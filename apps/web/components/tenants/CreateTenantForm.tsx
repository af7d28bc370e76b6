"use client";
// Creates a tenant, with an optional explicit id (32 hex characters; random when left empty): an
// empty database cluster, or a running PostgreSQL 15 primary imported and followed (its URL, and
// optionally the name of the physical replication slot to create there).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState, type FormEvent } from "react";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { useTRPC } from "@/lib/trpc";

export function CreateTenantForm() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [id, setId] = useState("");
  const [name, setName] = useState("");
  const [primary, setPrimary] = useState("");
  const [slot, setSlot] = useState("");
  /** the id of a tenant being imported: chosen here, so the import's progress can be polled */
  const [importingId, setImportingId] = useState<string | null>(null);
  const create = useMutation(
    trpc.tenants.create.mutationOptions({
      onSuccess: async () => {
        setId("");
        setName("");
        setPrimary("");
        setSlot("");
        await Promise.all([
          queryClient.invalidateQueries({ queryKey: trpc.tenants.list.queryKey() }),
          queryClient.invalidateQueries({ queryKey: trpc.health.queryKey() }),
        ]);
      },
    }),
  );

  const progress = useQuery({
    ...trpc.tenants.importProgress.queryOptions({ id: importingId ?? "" }),
    enabled: create.isPending && importingId !== null,
    refetchInterval: 1000,
  });

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    const fromPrimary = primary.trim();
    const trimmed = id.trim() || (fromPrimary ? randomTenantId() : "");
    setImportingId(fromPrimary ? trimmed : null);
    create.mutate({
      ...(trimmed ? { id: trimmed } : {}),
      ...(name.trim() ? { name: name.trim() } : {}),
      ...(fromPrimary ? { fromPrimary } : {}),
      ...(fromPrimary && slot.trim() ? { slot: slot.trim() } : {}),
    });
  }
  const importing = primary.trim() !== "";

  return (
    <form className="create-form" onSubmit={onSubmit} data-testid="create-tenant-form">
      <label className="field field-narrow">
        <span className="field-label">Name</span>
        <input
          name="tenantName"
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="optional, unique"
          maxLength={63}
          spellCheck={false}
          autoComplete="off"
          className="input"
        />
      </label>
      <label className="field">
        <span className="field-label">Tenant id</span>
        <input
          name="tenantId"
          value={id}
          onChange={(e) => setId(e.target.value)}
          placeholder="optional: 32 hex characters, random if empty"
          spellCheck={false}
          autoComplete="off"
          className="input mono"
        />
      </label>
      <label className="field">
        <span className="field-label">Follow a primary (optional)</span>
        <input
          name="fromPrimary"
          value={primary}
          onChange={(e) => setPrimary(e.target.value)}
          placeholder="postgresql://user:password@host:5432/postgres — empty: a new database"
          spellCheck={false}
          autoComplete="off"
          className="input mono"
        />
      </label>
      <label className="field field-narrow">
        <span className="field-label">Replication slot</span>
        <input
          name="slot"
          value={slot}
          onChange={(e) => setSlot(e.target.value)}
          placeholder={importing ? "default: strata_<tenant>_<timeline>" : "with a primary only"}
          disabled={!importing}
          spellCheck={false}
          autoComplete="off"
          className="input mono"
        />
      </label>
      <button type="submit" className="button button-primary" disabled={create.isPending}>
        {create.isPending ? (importing ? "Importing…" : "Creating…") : "Create tenant"}
      </button>
      {create.isPending && importingId ? (
        <div className="notice notice-info" role="status" data-testid="import-progress">
          <span>
            Importing a base backup of the primary into tenant <code className="mono">{importingId}</code>
            {progress.data ? `: ${importProgressText(progress.data)}` : "…"}
          </span>
          {progress.data?.totalBytes ? <progress className="import-bar" value={Math.min(progress.data.bytes, progress.data.totalBytes)} max={progress.data.totalBytes} /> : null}
        </div>
      ) : null}
      {create.isError ? <ErrorNotice title="Could not create tenant." error={create.error} /> : null}
      {create.isSuccess ? (
        <div className="notice notice-ok" role="status" data-testid="create-tenant-result">
          Created tenant{create.data.name ? <> <strong>{create.data.name}</strong></> : null} <Link href={`/tenants/${create.data.id}`}><code className="mono">{create.data.id}</code></Link> with{" "}
          {create.data.timelines.length === 1 ? "its main timeline" : `${create.data.timelines.length} timelines`}
          {create.variables?.fromPrimary ? ", imported from the primary and following it" : ""}.
        </div>
      ) : null}
    </form>
  );
}

function importProgressText({ bytes, totalBytes, elapsedMs }: { bytes: number; totalBytes: number | null; elapsedMs: number }): string {
  const mb = (n: number) => (n / 1048576).toFixed(1);
  const rate = elapsedMs > 0 ? bytes / 1048576 / (elapsedMs / 1000) : 0;
  return `${mb(bytes)} MB${totalBytes ? ` of ~${mb(totalBytes)} MB` : ""} (${rate.toFixed(1)} MB/s)`;
}

/** 32 random hex characters, as the pageserver would pick */
function randomTenantId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
