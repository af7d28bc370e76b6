// Named failpoints for crash tests: STRATA_FAILPOINTS="name=exit,other=error" makes the process
// exit abruptly (like kill -9) or throw at that point. Inert unless the variable is set.
export class FailpointError extends Error {}

export function failpoint(name: string): void {
  const spec = process.env.STRATA_FAILPOINTS;
  if (!spec) return;
  for (const entry of spec.split(",")) {
    const [key, action] = entry.split("=");
    if (key !== name) continue;
    if (action === "exit") process.kill(process.pid, "SIGKILL");
    if (action === "error") throw new FailpointError(`failpoint ${name} hit`);
  }
}
