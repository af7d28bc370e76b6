"use client";
// Last-resort boundary: an unexpected render error becomes a readable message, not a blank page.
export default function ErrorPage({ error, reset }: { error: Error & { digest?: string }; reset: () => void }) {
  return (
    <section className="card">
      <div className="notice notice-error" role="alert">
        <strong>Something went wrong.</strong>
        <span className="notice-message">{error.message || "Unexpected error."}</span>
      </div>
      <button type="button" className="button" onClick={reset}>Try again</button>
    </section>
  );
}
