// Root layout: providers, the pageserver status header, and the page.
import type { Metadata } from "next";
import type { ReactNode } from "react";
import { StatusHeader } from "@/components/layout/StatusHeader";
import { Providers } from "@/components/providers";
import { strataApiUrl } from "@/lib/server/strata-api";
import "./globals.css";

// STRATA_API is read per request, never baked into the build.
export const dynamic = "force-dynamic";

export const metadata: Metadata = {
  title: { default: "Strata", template: "%s · Strata" },
  description: "Strata pageserver dashboard",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>
        <Providers>
          <StatusHeader apiUrl={strataApiUrl()} />
          <main className="container">{children}</main>
        </Providers>
      </body>
    </html>
  );
}
