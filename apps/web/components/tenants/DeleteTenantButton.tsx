"use client";
// Deletes a tenant after an inline confirmation (no native dialog). What the deletion could not
// clean up (a replication slot left on an unreachable primary) is shown until acknowledged.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { ConfirmButton } from "@/components/common/ConfirmButton";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { useTRPC } from "@/lib/trpc";

export function DeleteTenantButton({ tenantId, onDeleted }: { tenantId: string; onDeleted?: () => void }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [warnings, setWarnings] = useState<string[]>([]);
  const finish = async () => {
    setWarnings([]);
    queryClient.removeQueries({ queryKey: trpc.tenants.get.queryKey({ id: tenantId }) });
    await Promise.all([
      queryClient.invalidateQueries({ queryKey: trpc.tenants.list.queryKey() }),
      queryClient.invalidateQueries({ queryKey: trpc.health.queryKey() }),
    ]);
    onDeleted?.();
  };
  const remove = useMutation(
    trpc.tenants.delete.mutationOptions({
      onSuccess: async (result) => {
        if (result.warnings.length) setWarnings(result.warnings);
        else await finish();
      },
    }),
  );

  if (warnings.length) {
    return (
      <div className="delete-tenant">
        <div className="notice notice-error" role="alert" data-testid="delete-warnings">
          <strong>Deleted, but:</strong>
          {warnings.map((w) => <span key={w}>{w}</span>)}
          <button type="button" className="button" onClick={() => void finish()}>OK</button>
        </div>
      </div>
    );
  }

  return (
    <div className="delete-tenant">
      <ConfirmButton
        label="Delete"
        question="Delete with all timelines?"
        title="The tenant and all its timelines are removed for good."
        pendingLabel="Deleting…"
        pending={remove.isPending}
        onOpen={() => remove.reset()}
        onConfirm={() => remove.mutate({ id: tenantId })}
      />
      {remove.isError ? <ErrorNotice title="Could not delete tenant." error={remove.error} /> : null}
    </div>
  );
}
