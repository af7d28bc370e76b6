"use client";
// Creates a branch: a name, a parent timeline (main by default) and optionally where to branch,
// as an LSN ("X/Y") or a point in time (local time, sent as ISO 8601). With neither, the branch
// starts at the parent's latest LSN. The pageserver rounds the LSN down to a record boundary, so
// the result shows the LSN actually used next to the one requested.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useState, type FormEvent } from "react";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { Mono } from "@/components/common/Mono";
import { useTRPC, type Timeline } from "@/lib/trpc";

export function CreateBranchForm({ tenantId, timelines }: { tenantId: string; timelines: Timeline[] }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [name, setName] = useState("");
  const [parent, setParent] = useState("");
  const [lsn, setLsn] = useState("");
  const [time, setTime] = useState("");
  const [localError, setLocalError] = useState<string | null>(null);

  const parents = timelines.filter((t) => t.state === "active");
  const root = parents.find((t) => t.parentTimelineId === null && t.name === "main") ?? parents.find((t) => t.parentTimelineId === null);
  const parentId = parent || root?.id || "";

  const create = useMutation(
    trpc.branches.create.mutationOptions({
      onSuccess: async () => {
        setName("");
        setLsn("");
        setTime("");
        await Promise.all([
          queryClient.invalidateQueries({ queryKey: trpc.timelines.list.queryKey({ tenantId }) }),
          queryClient.invalidateQueries({ queryKey: trpc.branches.list.queryKey({ tenantId }) }),
          queryClient.invalidateQueries({ queryKey: trpc.tenants.get.queryKey({ id: tenantId }) }),
        ]);
      },
    }),
  );

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    setLocalError(null);
    let at: string | undefined;
    if (time) {
      const d = new Date(time);
      if (Number.isNaN(d.getTime())) {
        setLocalError(`"${time}" is not a valid time`);
        return;
      }
      at = d.toISOString();
    }
    create.mutate({
      tenantId,
      name: name.trim(),
      ...(parentId ? { parentTimelineId: parentId } : {}),
      ...(lsn.trim() ? { lsn: lsn.trim() } : {}),
      ...(at ? { at } : {}),
    });
  }

  const created = create.isSuccess ? create.data : undefined;
  return (
    <form className="create-form branch-form" onSubmit={onSubmit} data-testid="create-branch-form">
      <label className="field field-narrow">
        <span className="field-label">Branch name</span>
        <input
          name="branchName"
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="e.g. dev"
          required
          maxLength={63}
          spellCheck={false}
          autoComplete="off"
          className="input"
        />
      </label>
      <label className="field field-narrow">
        <span className="field-label">Parent</span>
        <select name="parentTimelineId" value={parentId} onChange={(e) => setParent(e.target.value)} className="input">
          {parents.map((t) => (
            <option key={t.id} value={t.id}>
              {t.name} ({t.id.slice(0, 8)})
            </option>
          ))}
        </select>
      </label>
      <label className="field field-narrow">
        <span className="field-label">LSN (optional)</span>
        <input
          name="lsn"
          value={lsn}
          onChange={(e) => setLsn(e.target.value)}
          placeholder="latest, or X/Y"
          spellCheck={false}
          autoComplete="off"
          className="input mono"
          disabled={time !== ""}
        />
      </label>
      <label className="field field-narrow">
        <span className="field-label">or time (optional, local)</span>
        <input
          name="at"
          type="datetime-local"
          step={1}
          value={time}
          onChange={(e) => setTime(e.target.value)}
          className="input"
          disabled={lsn.trim() !== ""}
        />
      </label>
      <button type="submit" className="button button-primary" disabled={create.isPending || !name.trim()}>
        {create.isPending ? "Creating…" : "Create branch"}
      </button>
      {localError ? (
        <div className="notice notice-error" role="alert">
          <strong>Could not create branch.</strong> <span className="notice-message">{localError}</span>
        </div>
      ) : null}
      {create.isError ? <ErrorNotice title="Could not create branch." error={create.error} /> : null}
      {created ? (
        <div className="notice notice-ok" role="status" data-testid="create-branch-result" data-branch-name={created.name}>
          Created branch{" "}
          <Link href={`/tenants/${tenantId}/timelines/${created.id}`} className="strong">
            {created.name}
          </Link>{" "}
          at <span data-testid="create-branch-lsn"><Mono>{created.ancestorLsn}</Mono></span>
          {created.requestedLsn !== created.ancestorLsn ? (
            <span className="muted">
              {" "}
              (requested <Mono>{created.requestedLsn}</Mono>, rounded down to a record boundary)
            </span>
          ) : null}
          .
        </div>
      ) : null}
    </form>
  );
}
