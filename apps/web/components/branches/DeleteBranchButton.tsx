"use client";
// Deletes a branch after an inline confirmation. The server refuses (CONFLICT) while the branch has
// branches of its own or a running endpoint; the refusal is shown here.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { ConfirmButton } from "@/components/common/ConfirmButton";
import { ErrorNotice } from "@/components/common/ErrorNotice";
import { useTRPC } from "@/lib/trpc";

export function DeleteBranchButton({ tenantId, timelineId, name, onDeleted }: { tenantId: string; timelineId: string; name: string; onDeleted?: () => void }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const remove = useMutation(
    trpc.branches.delete.mutationOptions({
      onSuccess: async () => {
        // stop polling the branch before anything can refetch it
        await queryClient.cancelQueries({ queryKey: trpc.timelines.get.queryKey({ tenantId, timelineId }) });
        queryClient.removeQueries({ queryKey: trpc.timelines.get.queryKey({ tenantId, timelineId }) });
        await Promise.all([
          queryClient.invalidateQueries({ queryKey: trpc.branches.list.queryKey({ tenantId }) }),
          queryClient.invalidateQueries({ queryKey: trpc.tenants.get.queryKey({ id: tenantId }) }),
        ]);
        onDeleted?.();
      },
    }),
  );

  return (
    <div className="delete-tenant" data-testid="delete-branch">
      <ConfirmButton
        label="Delete branch"
        question={`Delete branch ${name}?`}
        title="The branch's timeline and stopped endpoints are removed for good."
        pendingLabel="Deleting…"
        pending={remove.isPending}
        onOpen={() => remove.reset()}
        onConfirm={() => remove.mutate({ tenantId, branch: timelineId })}
      />
      {remove.isError ? <ErrorNotice title="Could not delete branch." error={remove.error} /> : null}
    </div>
  );
}
