"use client";
// Moves a timeline that follows an external primary to another server of the same database
// system, e.g. the standby promoted in a failover at its own address. The pageserver checks the
// server and prepares its slot before anything changes; a refusal is shown here and the timeline
// keeps following what it followed.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { Mono } from "@/components/common/Mono";
import { useTRPC } from "@/lib/trpc";

export function SetPrimaryForm({ tenantId, timelineId }: { tenantId: string; timelineId: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);
  const [primary, setPrimary] = useState("");
  const [slot, setSlot] = useState("");
  const move = useMutation(
    trpc.timelines.setPrimary.mutationOptions({
      onSuccess: async () => {
        setPrimary("");
        setSlot("");
        await queryClient.invalidateQueries({ queryKey: trpc.timelines.get.queryKey({ tenantId, timelineId }) });
      },
    }),
  );

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    move.mutate({ tenantId, timelineId, primary: primary.trim(), ...(slot.trim() ? { slot: slot.trim() } : {}) });
  }

  const done = move.isSuccess ? move.data : undefined;
  return (
    <div data-testid="set-primary">
      {open ? (
        <form className="create-form" onSubmit={onSubmit} data-testid="set-primary-form">
          <label className="field">
            <span className="field-label">New primary (same database system)</span>
            <input
              name="primary"
              value={primary}
              onChange={(e) => setPrimary(e.target.value)}
              placeholder="postgresql://user@host:5432/postgres"
              required
              spellCheck={false}
              autoComplete="off"
              className="input mono"
            />
          </label>
          <label className="field field-narrow">
            <span className="field-label">Slot (optional)</span>
            <input
              name="slot"
              value={slot}
              onChange={(e) => setSlot(e.target.value)}
              placeholder="the current slot name"
              pattern="[a-z0-9_]{1,63}"
              spellCheck={false}
              autoComplete="off"
              className="input mono"
            />
          </label>
          <button type="submit" className="button button-primary" disabled={move.isPending || !primary.trim()}>
            {move.isPending ? "Switching…" : "Follow this server"}
          </button>
          <button type="button" className="button" onClick={() => setOpen(false)} disabled={move.isPending}>
            Cancel
          </button>
        </form>
      ) : (
        <button type="button" className="button" onClick={() => (move.reset(), setOpen(true))}>
          Change primary…
        </button>
      )}
      {move.isError ? <ErrorNotice title="Could not change the primary." error={move.error} /> : null}
      {done ? (
        <div className="notice notice-ok" role="status" data-testid="set-primary-result">
          Following <Mono>{done.primary}</Mono> through slot <Mono>{done.slot}</Mono>
          {done.slotCreated ? " (created there)" : ""} from <Mono>{done.resumeLsn}</Mono>.
          {done.warnings.map((w) => (
            <div key={w} className="muted">
              {w}
            </div>
          ))}
        </div>
      ) : null}
    </div>
  );
}
