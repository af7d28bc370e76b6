// "/": the tenants, with create and delete.
import { CreateTenantForm } from "@/components/tenants/CreateTenantForm";
import { TenantList } from "@/components/tenants/TenantList";

export default function TenantsPage() {
  return (
    <>
      <section className="card">
        <h1>Tenants</h1>
        <CreateTenantForm />
      </section>
      <section className="card">
        <TenantList />
      </section>
    </>
  );
}
