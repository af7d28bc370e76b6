// An LSN ("X/Y") or an id, in monospace.
export function Mono({ children, title }: { children: string; title?: string }) {
  return (
    <code className="mono" title={title}>
      {children}
    </code>
  );
}
