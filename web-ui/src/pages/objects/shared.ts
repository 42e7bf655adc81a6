// What the sections of the Object storage page share: their context, the
// policies and roles offered, and small helpers for keys, prefixes and URLs.
import { seg, withQuery, type AccessKeyResource, type BucketPolicy, type BucketResource } from "../../api";
import type { Translate } from "../../i18n";
import type { Loaded } from "../../components/ui";
import type { Scope } from "../network/shared";

export type { Scope };

/** What every section gets: the lists of the project, the chosen bucket, the scope and reloaders. */
export interface Ctx {
  scope: Scope;
  canWrite: boolean;
  buckets: BucketResource[];
  keys: AccessKeyResource[];
  loads: { buckets: Loaded<unknown>; keys: Loaded<unknown> };
  reload: { buckets: () => void; keys: () => void };
  /** The bucket the object browser shows, if any. */
  selected: BucketResource | undefined;
  select: (id: string | null) => void;
  /** The S3 endpoint URL, or null when the node runs none. */
  endpoint: string | null;
}

export const POLICIES: readonly BucketPolicy[] = ["private", "public-read"];
export const KEY_ROLES = ["member", "viewer", "admin"] as const;

export function policyLabel(t: Translate, policy: string | undefined): string {
  if (policy === "public-read") return t("objects.policyPublicRead");
  if (policy === "private" || policy === undefined) return t("objects.policyPrivate");
  return policy;
}

/** The S3 endpoint as seen from this browser: plain HTTP on the S3 port of the console's host
 * (`s3_port` of /v1/site; 9000 by default), or null when the site runs no S3 endpoint. */
export function s3Endpoint(port: number | null | undefined, loc: Pick<Location, "hostname"> = window.location): string | null {
  if (port === null) return null;
  return `http://${loc.hostname}:${port ?? 9000}`;
}

/** The download URL of an object (the session cookie authenticates a plain link). */
export function objectUrl(bucket: BucketResource, key: string, scope: Scope): string {
  return withQuery(`/v1/buckets/${seg(bucket.id)}/object`, { ...scope, key });
}

/** The name of a key or prefix below `prefix` ("docs/a/b.txt" under "docs/" → "a/b.txt"). */
export function relativeTo(prefix: string, key: string): string {
  return key.startsWith(prefix) ? key.slice(prefix.length) : key;
}

/** The last part of a key ("docs/hello.txt" → "hello.txt"), for the download's file name. */
export function baseName(key: string): string {
  const parts = key.split("/").filter(Boolean);
  return parts[parts.length - 1] ?? key;
}

/** The breadcrumb of a prefix: "docs/a/" → [{docs, "docs/"}, {a, "docs/a/"}] (the bucket's root comes first, separately). */
export function crumbs(prefix: string): { label: string; prefix: string }[] {
  const out: { label: string; prefix: string }[] = [];
  let at = "";
  for (const part of prefix.split("/")) {
    if (!part) continue;
    at += `${part}/`;
    out.push({ label: part, prefix: at });
  }
  return out;
}

/** A folder name typed by the user as a prefix part: surrounding slashes dropped, "" when nothing is left. */
export function folderPrefix(text: string): string {
  const trimmed = text.trim().replace(/^\/+|\/+$/g, "");
  return trimmed ? `${trimmed.replace(/\/{2,}/g, "/")}/` : "";
}

/** A quota field: empty for none, else a positive whole number of MiB; throws `message` otherwise. */
export function parseQuota(text: string, message: string): number | undefined {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  const n = Number(trimmed);
  if (!Number.isInteger(n) || n <= 0) throw new Error(message);
  return n;
}
