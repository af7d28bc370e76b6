// Side-effect stylesheet imports (app/globals.css). Next's own declarations arrive with the
// generated next-env.d.ts, which is git-ignored; this keeps `tsc` happy on a fresh checkout.
declare module "*.css";
