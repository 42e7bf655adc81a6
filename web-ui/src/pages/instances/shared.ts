// What the parts of the Instances page share: the API's shapes (an instance,
// its spec and status), the page's context, the create form's spec builder and
// the mapping of a field-naming error onto the form's fields.
import {
  ApiError,
  seg,
  type ImageResource,
  type Resource,
  type RestartPolicy,
  type SecurityGroupResource,
  type Status,
  type SubnetResource,
  type VolumeResource,
} from "../../api";
import type { Loaded } from "../../components/ui";
import type { Translate } from "../../i18n";
import type { Scope } from "../../projectScope";

export type { Scope };

/** A data volume of an instance (`vdb`, `vdc`, … in order): a volume id, attached read-only or not. */
export interface InstanceVolume {
  volume: string;
  read_only?: boolean;
}

/** Spec of an instance (`InstanceSpec` in `cloudlet openapi`); references are stored as ids. */
export interface InstanceSpec {
  image: string;
  vcpus?: number;
  memory_mib?: number;
  subnet: string;
  security_groups?: string[];
  private_ip?: string | null;
  volumes?: InstanceVolume[];
  state?: "running" | "stopped";
  restart_policy?: RestartPolicy;
  stop_timeout_seconds?: number;
  cmdline_extra?: string | null;
  restart_token?: number;
  network_interface?: string | null;
}

/**
 * Status of an instance. `phase`: Pending, Running, Stopping, Stopped, Failed or
 * Restarting; `boot_timer_ms` is the guest's boot time as its boot timer write
 * measured it; `exit_reason` is how the last run ended (poweroff, reboot,
 * stopped, crashed, killed, lost).
 */
export interface InstanceStatus extends Status {
  private_ip?: string;
  mac?: string;
  network_interface?: string;
  pid?: number;
  started_at?: string;
  finished_at?: string;
  boot_timer_ms?: number;
  restart_count?: number;
  exit_reason?: string;
  message?: string;
  tap?: string;
}

export type InstanceResource = Resource<InstanceSpec, InstanceStatus>;

/** What every part of the page gets: the project's lists, the chosen instance, the scope and reloaders. */
export interface Ctx {
  scope: Scope;
  canWrite: boolean;
  instances: InstanceResource[];
  /** The project's VM images (`status.format = "vm"`). */
  images: ImageResource[];
  subnets: SubnetResource[];
  groups: SecurityGroupResource[];
  volumes: VolumeResource[];
  loaded: Loaded<unknown>;
  reload: () => void;
  selected: InstanceResource | undefined;
  select: (id: string | null) => void;
  /** Shows (or clears) the page's notice. */
  notify: (text: string | null) => void;
}

export const RESTART_POLICIES: RestartPolicy[] = ["on-failure", "always", "never"];

/** Phases in which no worker runs. */
export const ENDED = ["Stopped", "Failed"];

/** Whether an image row is a VM image (imported with `POST /v1/images/import-vm`). */
export function isVmImage(image: ImageResource): boolean {
  return (image.status as Record<string, unknown> | undefined)?.format === "vm";
}

/** The API path of an instance (by id), with an optional sub-path such as "/console". */
export function instPath(i: Pick<InstanceResource, "id">, sub = ""): string {
  return `/v1/instances/${seg(i.id)}${sub}`;
}

/** The websocket URL of an instance's live console, on this page's origin. */
export function consoleSocketUrl(i: Pick<InstanceResource, "id">, scope: Scope, loc: Pick<Location, "protocol" | "host"> = window.location): string {
  const proto = loc.protocol === "https:" ? "wss:" : "ws:";
  const q = scope?.project ? `?project=${encodeURIComponent(scope.project)}` : "";
  return `${proto}//${loc.host}${instPath(i, "/console/ws")}${q}`;
}

/** An error of the create form that names the spec field it is about (as the API's 422 does). */
export class FieldError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(message);
    this.name = "FieldError";
    this.field = field;
  }
}

/** The field an error names (an API error's `field`, or a form check's), if any. */
export function errorField(err: unknown): string | undefined {
  if (err instanceof ApiError || err instanceof FieldError) return err.field || undefined;
  return undefined;
}

/** Whether `field` (e.g. `spec.volumes[1].volume`) is `name` or inside it (`spec.volumes[1]`, `spec.volumes`). */
export function fieldMatches(field: string | undefined, name: string): boolean {
  if (!field) return false;
  return field === name || field.startsWith(`${name}.`) || field.startsWith(`${name}[`);
}

export interface CreateForm {
  image: string;
  vcpus: string;
  memory: string;
  subnet: string;
  groups: string[];
  privateIp: string;
  volumes: InstanceVolume[];
  restartPolicy: RestartPolicy;
  stopTimeout: string;
}

/** A whole number field: empty → undefined; anything else must be an integer (FieldError otherwise). */
function wholeNumber(text: string, field: string, label: string, t: Translate): number | undefined {
  const trimmed = text.trim();
  if (!trimmed) return undefined;
  const n = Number(trimmed);
  if (!Number.isInteger(n)) throw new FieldError(field, t("instances.badNumber", { field: label, value: trimmed }));
  return n;
}

/**
 * The body's spec for `POST /v1/instances` from the create form. Ranges are the
 * daemon's to check (its 422 names the field); only text that is not a whole
 * number is refused here, as a FieldError naming the same field.
 */
export function createSpec(f: CreateForm, t: Translate): InstanceSpec {
  const spec: InstanceSpec = {
    image: f.image,
    subnet: f.subnet,
    security_groups: f.groups,
    volumes: f.volumes.map((v) => ({ volume: v.volume, read_only: !!v.read_only })),
    restart_policy: f.restartPolicy,
  };
  const vcpus = wholeNumber(f.vcpus, "spec.vcpus", t("instances.vcpus"), t);
  const memory = wholeNumber(f.memory, "spec.memory_mib", t("instances.memory"), t);
  const stop = wholeNumber(f.stopTimeout, "spec.stop_timeout_seconds", t("instances.stopTimeout"), t);
  if (vcpus !== undefined) spec.vcpus = vcpus;
  if (memory !== undefined) spec.memory_mib = memory;
  if (stop !== undefined) spec.stop_timeout_seconds = stop;
  if (f.privateIp.trim()) spec.private_ip = f.privateIp.trim();
  return spec;
}

/** 12.5 → "12.5 ms", 6840 → "6.84 s"; absent → "—". */
export function formatBootTime(ms: number | undefined): string {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return "—";
  if (ms >= 1000) return `${+(ms / 1000).toFixed(2)} s`;
  return `${+ms.toFixed(1)} ms`;
}

/** 256 → "256 MiB", 2048 → "2 GiB". */
export function formatMib(mib: number | undefined): string {
  if (typeof mib !== "number" || !Number.isFinite(mib)) return "—";
  return mib >= 1024 && mib % 1024 === 0 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

/** Console log text for a `<pre>`: ANSI escape sequences (colours, cursor moves) and carriage returns dropped. */
export function cleanLog(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, "").replace(/\x1b[()][0-9A-Za-z]/g, "").replace(/\r/g, "");
}
