"use client";
// Deletes a tenant after an inline confirmation (no native dialog).
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { useTRPC } from "@/lib/trpc";

export function DeleteTenantButton({ tenantId, onDeleted }: { tenantId: string; onDeleted?: () => void }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const [confirming, setConfirming] = useState(false);
  const remove = useMutation(
    trpc.tenants.delete.mutationOptions({
      onSuccess: async () => {
        setConfirming(false);
        queryClient.removeQueries({ queryKey: trpc.tenants.get.queryKey({ id: tenantId }) });
        await Promise.all([
          queryClient.invalidateQueries({ queryKey: trpc.tenants.list.queryKey() }),
          queryClient.invalidateQueries({ queryKey: trpc.health.queryKey() }),
        ]);
        onDeleted?.();
      },
    }),
  );

  return (
    <div className="delete-tenant">
      {confirming ? (
        <span className="confirm">
          <span title="The tenant and all its timelines are removed for good.">Delete with all timelines?</span>
          <button
            type="button"
            className="button button-danger"
            disabled={remove.isPending}
            onClick={() => remove.mutate({ id: tenantId })}
          >
            {remove.isPending ? "Deleting…" : "Yes, delete"}
          </button>
          <button type="button" className="button" disabled={remove.isPending} onClick={() => setConfirming(false)}>
            Cancel
          </button>
        </span>
      ) : (
        <button type="button" className="button button-danger-outline" onClick={() => { remove.reset(); setConfirming(true); }}>
          Delete
        </button>
      )}
      {remove.isError ? <ErrorNotice title="Could not delete tenant." error={remove.error} /> : null}
    </div>
  );
}
