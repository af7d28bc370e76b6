// "/tenants/[id]": one tenant and its timelines.
import type { Metadata } from "next";
import { TenantDetail } from "@/components/tenants/TenantDetail";

type Props = { params: Promise<{ id: string }> };

export async function generateMetadata({ params }: Props): Promise<Metadata> {
  const { id } = await params;
  return { title: `Tenant ${id.slice(0, 8)}` };
}

export default async function TenantPage({ params }: Props) {
  const { id } = await params;
  return <TenantDetail tenantId={id} />;
}
