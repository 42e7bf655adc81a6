// What the sections of the Containers page share: their context and the
// parsers of the run form (words, KEY=value lines, volume mounts, numbers, a
// name from a file).
import type {
  ContainerMount,
  ContainerResource,
  ContainerSpec,
  ImageResource,
  NetworkInterfaceResource,
  RestartPolicy,
} from "../../api";
import type { Loaded } from "../../components/ui";
import type { Translate } from "../../i18n";
import type { Scope } from "../network/shared";

export type { Scope };

/** What both sections get: the lists of the project, the scope and reloaders. */
export interface Ctx {
  scope: Scope;
  canWrite: boolean;
  images: ImageResource[];
  containers: ContainerResource[];
  interfaces: NetworkInterfaceResource[];
  loads: { images: Loaded<unknown>; containers: Loaded<unknown> };
  reload: { images: () => void; containers: () => void };
}

export const RESTART_POLICIES: RestartPolicy[] = ["never", "on-failure", "always"];

export const MAX_LOG_LINES = 5000;

/**
 * A command line: empty → undefined (the image's default), text starting with
 * `[` → a JSON array of strings, anything else → words separated by white space.
 */
export function parseWords(text: string, label: string, t: Translate): string[] | undefined {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  if (trimmed.startsWith("[")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(trimmed);
    } catch {
      parsed = null;
    }
    if (!Array.isArray(parsed) || !parsed.every((w) => typeof w === "string")) {
      throw new Error(t("containers.badWords", { field: label }));
    }
    return parsed as string[];
  }
  return trimmed.split(/\s+/);
}

/** `KEY=value` lines (blank lines and `#` comments skipped); throws naming the bad line. */
export function parseEnv(text: string, t: Translate): Record<string, string> {
  const env: Record<string, string> = {};
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "");
    if (!line.trim() || line.trim().startsWith("#")) return;
    const eq = line.indexOf("=");
    const key = eq > 0 ? line.slice(0, eq).trim() : "";
    if (!key || /\s/.test(key)) throw new Error(t("containers.badEnv", { line: i + 1, text: line.trim() }));
    env[key] = line.slice(eq + 1);
  });
  return env;
}

/** An optional number field: empty → undefined; throws when it is not a number. */
export function parseNumber(text: string, label: string, t: Translate): number | undefined {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  const n = Number(trimmed);
  if (!Number.isFinite(n)) throw new Error(t("containers.badNumber", { field: label, value: trimmed }));
  return n;
}

/** `VOLUME:/target[:ro]` lines (blank lines and `#` comments skipped); throws naming the bad line. */
export function parseMounts(text: string, t: Translate): ContainerMount[] {
  const mounts: ContainerMount[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const [volume, target, mode, ...rest] = line.split(":").map((p) => p.trim());
    if (!volume || !target?.startsWith("/") || (mode !== undefined && mode !== "ro" && mode !== "rw") || rest.length) {
      throw new Error(t("containers.badMount", { line: i + 1, text: line }));
    }
    mounts.push({ volume, target, read_only: mode === "ro" });
  });
  return mounts;
}

export interface RunForm {
  image: string;
  networkInterface: string;
  restartPolicy: RestartPolicy;
  memory: string;
  cpus: string;
  command: string;
  args: string;
  env: string;
  mounts: string;
}

/** The spec of `POST /v1/containers` from the run form; throws on a malformed field. */
export function runSpec(f: RunForm, t: Translate): ContainerSpec {
  const spec: ContainerSpec = { image: f.image, restart_policy: f.restartPolicy, env: parseEnv(f.env, t) };
  const command = parseWords(f.command, t("containers.command"), t);
  const args = parseWords(f.args, t("containers.args"), t);
  if (command) spec.command = command;
  if (args) spec.args = args;
  if (f.networkInterface) spec.network_interface = f.networkInterface;
  const mounts = parseMounts(f.mounts, t);
  if (mounts.length) spec.mounts = mounts;
  const memory = parseNumber(f.memory, t("containers.memory"), t);
  const cpus = parseNumber(f.cpus, t("containers.cpus"), t);
  const resources: ContainerSpec["resources"] = {};
  if (memory !== undefined) resources.memory_mib = memory;
  if (cpus !== undefined) resources.cpus = cpus;
  spec.resources = resources;
  return spec;
}

/** A resource name from an archive's file name: "busybox-httpd.oci.tar" → "busybox-httpd". */
export function nameFromFile(file: string): string {
  let base = file.replace(/^.*[\\/]/, "").toLowerCase();
  for (;;) {
    const next = base.replace(/\.(tar|tgz|gz|oci|docker|image)$/, "");
    if (next === base) break;
    base = next;
  }
  return base
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-|-$/g, "")
    .slice(0, 63)
    .replace(/-$/, "");
}

/** A short digest for a table: "sha256:0123456789ab". */
export function shortDigest(digest: string | undefined): string {
  if (!digest) return "";
  const [algo, hex] = digest.includes(":") ? digest.split(":", 2) : ["", digest];
  return `${algo ? `${algo}:` : ""}${hex.slice(0, 12)}`;
}
