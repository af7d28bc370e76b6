"use client";
// Creates a tenant, with an optional explicit id (32 hex characters; random when left empty).
import { useMutation, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState, type FormEvent } from "react";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { useTRPC } from "@/lib/trpc";

export function CreateTenantForm() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [id, setId] = useState("");
  const create = useMutation(
    trpc.tenants.create.mutationOptions({
      onSuccess: async () => {
        setId("");
        await Promise.all([
          queryClient.invalidateQueries({ queryKey: trpc.tenants.list.queryKey() }),
          queryClient.invalidateQueries({ queryKey: trpc.health.queryKey() }),
        ]);
      },
    }),
  );

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    const trimmed = id.trim();
    create.mutate(trimmed ? { id: trimmed } : {});
  }

  return (
    <form className="create-form" onSubmit={onSubmit} data-testid="create-tenant-form">
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
      <button type="submit" className="button button-primary" disabled={create.isPending}>
        {create.isPending ? "Creating…" : "Create tenant"}
      </button>
      {create.isError ? <ErrorNotice title="Could not create tenant." error={create.error} /> : null}
      {create.isSuccess ? (
        <div className="notice notice-ok" role="status" data-testid="create-tenant-result">
          Created tenant <Link href={`/tenants/${create.data.id}`}><code className="mono">{create.data.id}</code></Link> with{" "}
          {create.data.timelines.length === 1 ? "its main timeline" : `${create.data.timelines.length} timelines`}.
        </div>
      ) : null}
    </form>
  );
}
