"use client";
// A destructive action behind an inline confirmation (no native dialog): the button, then the
// question with "Yes" and "Cancel" while confirming.
import { useState } from "react";

export function ConfirmButton({ label, question, title, pendingLabel, pending, onConfirm, onOpen }: {
  label: string;
  question: string;
  /** what confirming does, as a tooltip on the question */
  title: string;
  pendingLabel: string;
  pending: boolean;
  onConfirm: () => void;
  /** when the question opens (e.g. to clear an earlier error) */
  onOpen?: () => void;
}) {
  const [confirming, setConfirming] = useState(false);
  if (!confirming) {
    return (
      <button type="button" className="button button-danger-outline" onClick={() => { onOpen?.(); setConfirming(true); }}>
        {label}
      </button>
    );
  }
  return (
    <span className="confirm">
      <span title={title}>{question}</span>
      <button type="button" className="button button-danger" disabled={pending} onClick={onConfirm}>
        {pending ? pendingLabel : "Yes, delete"}
      </button>
      <button type="button" className="button" disabled={pending} onClick={() => setConfirming(false)}>
        Cancel
      </button>
    </span>
  );
}
