// What the API may show or record of a primary's URL.

/** The URL without its password (in the user part or a `password` parameter): it never leaves the server. */
export function redactPrimaryUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:@/?#]*):[^@/?#]*@/i, "$1:***@").replace(/([?&]password=)[^&#]*/gi, "$1***");
}
