// What the sections of the Functions page share: the API's shapes (a function,
// its metrics, a test request's answer), the page's context, and small parsers
// and formatters.
import { seg, type Resource } from "../../api";
import type { Loaded } from "../../components/ui";
import type { Translate } from "../../i18n";
import type { Scope } from "../../projectScope";

export type { Scope };

/** Spec of a function (`GET /v1/functions`). `version` is served; `versions` are kept, oldest first. */
export interface FunctionSpec {
  route: string;
  host?: string | null;
  env?: Record<string, string>;
  memory_mib?: number;
  timeout_ms?: number;
  max_concurrency?: number;
  max_body_bytes?: number;
  allowed_hosts?: string[];
  version?: number;
  versions?: number[];
}

export type FunctionResource = Resource<FunctionSpec>;

/** One bucket of the latency histogram: requests at most `le_ms` (null: the overflow bucket). Not cumulative. */
export interface LatencyBucket {
  le_ms: number | null;
  count: number;
}

/** `GET /v1/functions/{id}/metrics`. */
export interface FunctionMetrics {
  version: number;
  invocations: Partial<Record<Outcome, number>>;
  errors: number;
  cold_starts: number;
  warm_starts: number;
  latency: LatencyBucket[];
  mean_ms: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

export const OUTCOMES = ["ok", "timeout", "failed", "busy", "too_large"] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The answer of `POST /v1/functions/{id}/invoke`. */
export interface InvokeResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  truncated: boolean;
  ms: number;
}

/** What every section gets: the project's functions, the chosen one, the scope and reloaders. */
export interface Ctx {
  scope: Scope;
  canWrite: boolean;
  functions: FunctionResource[];
  loaded: Loaded<unknown>;
  reload: () => void;
  /** The function the detail panel shows, if any. */
  selected: FunctionResource | undefined;
  select: (id: string | null) => void;
  /** The gateway's port (null: off; undefined: not known yet). */
  gatewayPort: number | null | undefined;
  /** Shows (or clears) the page's notice. */
  notify: (text: string | null) => void;
}

/** The API path of a function (by id), with an optional sub-path such as "/logs". */
export function fnPath(f: FunctionResource, sub = ""): string {
  return `/v1/functions/${seg(f.id)}${sub}`;
}

/** The gateway's base URL as seen from this browser (plain HTTP on the console's host), or null when it is off. */
export function gatewayBase(port: number | null | undefined, loc: Pick<Location, "hostname"> = window.location): string | null {
  if (port === null || port === undefined) return null;
  return `http://${loc.hostname}:${port}`;
}

/** An optional whole-number field: empty → undefined, else a positive integer; throws a translated error otherwise. */
export function parseCount(text: string, field: string, t: Translate): number | undefined {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  const n = Number(trimmed);
  if (!Number.isInteger(n) || n <= 0) throw new Error(t("functions.badNumber", { field, value: trimmed }));
  return n;
}

/** "Name: value" lines into headers; blank lines are skipped. */
export function parseHeaders(text: string, t: Translate): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(t("functions.badHeader", { line }));
    out[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return out;
}

/** Host lines (one per line or comma separated) into the allow-list. */
export function parseHosts(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((h) => h.trim())
    .filter(Boolean);
}

/** 0.4 → "0.4 ms", 1234.5 → "1235 ms", 2500 → "2.5 s"; null → "—". */
export function formatMs(ms: number | null | undefined): string {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  if (ms >= 1000) return `${+(ms / 1000).toFixed(ms >= 10000 ? 0 : 1)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 10) return `${+ms.toFixed(1)} ms`;
  return `${+ms.toFixed(2)} ms`;
}

/** Text into lines; a final newline does not make an empty last line. */
export function splitLines(text: string): string[] {
  if (!text) return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}
