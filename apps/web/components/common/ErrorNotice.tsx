// An inline, readable error: what failed, why, and the API's error code.
import { describeError } from "@/lib/errors";

export function ErrorNotice({ title, error }: { title: string; error: unknown }) {
  const { code, message } = describeError(error);
  return (
    <div className="notice notice-error" role="alert">
      <strong>{title}</strong>
      <span className="notice-message">{message}</span>
      {code ? <code className="notice-code">{code}</code> : null}
    </div>
  );
}
