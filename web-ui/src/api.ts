// Thin client for the cloudlet REST API (docs/api.md).
//
// Every request is same-origin and authenticated by the `cloudlet_session`
// cookie. Mutating requests always carry `Content-Type: application/json`,
// which the daemon requires for cookie-authenticated writes.

export interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  last_transition_time?: string;
}

export interface Status {
  phase?: string;
  observed_generation?: number;
  conditions?: Condition[];
  [key: string]: unknown;
}

export interface Resource<S = Record<string, unknown>, St = Status> {
  id: string;
  kind: string;
  name: string;
  project?: string | null;
  labels?: Record<string, string>;
  generation?: number;
  created_at?: string;
  updated_at?: string;
  spec?: S;
  status?: St;
}

export interface List<T> {
  items: T[];
  next_page_token?: string | null;
}

export interface Whoami {
  actor: string;
  project: string;
  role: string;
  site_admin: boolean;
}

export interface ProbeFeature {
  available?: boolean;
  detail?: string;
  [key: string]: unknown;
}

export interface NodeStatus extends Status {
  heartbeat_at?: string | null;
  capacity?: {
    cpus?: number;
    memory_bytes?: number;
    memory_available_bytes?: number;
    disk_bytes?: number;
    disk_free_bytes?: number;
    [key: string]: unknown;
  };
  probe?: {
    hostname?: string;
    kernel?: string;
    arch?: string;
    cpu_model?: string;
    cgroup_version?: number | string;
    features?: Record<string, ProbeFeature | boolean | string | null>;
    [key: string]: unknown;
  };
}

export type NodeResource = Resource<{ schedulable?: boolean }, NodeStatus>;
export type ProjectResource = Resource<{ description?: string; quotas?: Record<string, number> }>;
export type TokenResource = Resource<{ role?: string; expires_at?: string | null }>;
export type OperationResource = Resource<{ action?: string; target_kind?: string; target_id?: string }>;

// ---- VPC networking (docs/api.md, "VPC networking"). References are stored as ids.

export type SgProtocol = "tcp" | "udp" | "icmp" | "all";

/** One inbound rule of a security group: exactly one of source_cidr and source_group. */
export interface SgRule {
  protocol: SgProtocol;
  ports?: string;
  source_cidr?: string;
  source_group?: string;
}

export type VpcResource = Resource<{ cidr?: string }>;
export type SubnetResource = Resource<{ vpc?: string; cidr?: string }>;
export type SecurityGroupResource = Resource<{ vpc?: string; ingress?: SgRule[] }>;
export type NetworkInterfaceResource = Resource<{ subnet?: string; private_ip?: string; security_groups?: string[] }>;
export type EipResource = Resource<{ public_ip?: string; network_interface?: string | null }>;
export type NatGatewayResource = Resource<{ subnet?: string; eip?: string | null }>;
export type PortForwardResource = Resource<{
  protocol?: string;
  public_port?: number;
  eip?: string | null;
  network_interface?: string;
  private_port?: number;
}>;
export interface BackendSpec {
  ip: string;
  port: number;
  weight?: number;
}
export type LoadBalancerResource = Resource<{
  vpc?: string;
  listener?: { protocol?: string; port?: number; eip?: string; subnet?: string; vip?: string };
  backends?: BackendSpec[];
  affinity?: string;
  health_check?: { interval_seconds?: number } | null;
}>;

// ---- Images and containers (/v1/images, /v1/containers). References are stored as ids.

export interface ImageConfig {
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  working_dir?: string;
  user?: string;
  exposed_ports?: string[];
}

export interface ImageStatus extends Status {
  digest?: string;
  size_bytes?: number;
  config?: ImageConfig;
  message?: string;
}

export type ImageResource = Resource<{ source?: string; insecure?: boolean }, ImageStatus>;

export type RestartPolicy = "never" | "on-failure" | "always";

export type ContainerSpec = {
  image: string;
  command?: string[];
  args?: string[];
  env?: Record<string, string>;
  network_interface?: string;
  resources?: { cpus?: number; memory_mib?: number; pids?: number };
  restart_policy?: RestartPolicy;
  mounts?: ContainerMount[];
  state?: "running" | "stopped";
};

/** A volume of the project (id or name on write; stored as the id) mounted at `target`. */
export interface ContainerMount {
  volume?: string;
  host_path?: string;
  target: string;
  read_only?: boolean;
}

export interface ContainerStatus extends Status {
  private_ip?: string;
  pid?: number;
  exit_code?: number;
  oom_killed?: boolean;
  restart_count?: number;
  started_at?: string;
  finished_at?: string;
  message?: string;
}

export type ContainerResource = Resource<ContainerSpec, ContainerStatus>;

// ---- Block storage (docs/api.md, "Block volumes").

export interface VolumeStatus extends Status {
  path?: string;
  provisioned_bytes?: number;
  allocated_bytes?: number;
  /** Names of the containers that mount the volume. */
  attached_to?: string[];
  mounted?: boolean;
}

/** `size_mib` only grows; `source_snapshot` (a snapshot id once stored) makes a clone. */
export type VolumeResource = Resource<{ size_mib?: number; source_snapshot?: string }, VolumeStatus>;

export interface SnapshotStatus extends Status {
  size_mib?: number;
  allocated_bytes?: number;
  copy?: "reflink" | "sparse" | string;
  taken_at?: string;
  message?: string;
}

/** `volume` is the id of the volume the snapshot copies. */
export type SnapshotResource = Resource<{ volume: string }, SnapshotStatus>;

// ---- Object storage (/v1/buckets, /v1/access-keys; S3 itself is a separate listener).

export type BucketPolicy = "private" | "public-read";

/** `quota_mib` absent: only the project's `object_mib` quota bounds the bucket. */
export type BucketResource = Resource<{ policy?: BucketPolicy; quota_mib?: number }>;

/** One object of a listing (`GET /v1/buckets/{id}/objects`). */
export interface ObjectEntry {
  key: string;
  size: number;
  etag: string;
  last_modified: string;
  content_type?: string | null;
}

/** A page of the object browser: `next` (a key or prefix) is the `after` of the next page; bytes/count cover the whole bucket. */
export interface ObjectListing {
  objects: ObjectEntry[];
  prefixes: string[];
  next?: string | null;
  bytes: number;
  count: number;
}

export type AccessKeyResource = Resource<{ role?: string }>;

/** The answer of `POST /v1/access-keys`: the only time the secret is shown. */
export interface CreatedAccessKey extends AccessKeyResource {
  access_key_id: string;
  secret_access_key: string;
}

export interface OperationStatus extends Status {
  progress?: number;
  error?: { code?: string; message?: string } | null;
}

export interface CreatedToken extends TokenResource {
  secret: string;
}

export interface SiteInfo {
  version?: string;
  node_name?: string;
  started_at?: string;
  counts?: Record<string, number>;
}

export interface CloudEvent {
  cursor?: number;
  time?: string;
  project?: string | null;
  kind?: string;
  resource_id?: string;
  name?: string;
  type: string;
  message?: string;
}

export interface AuditRecord {
  id: string | number;
  time?: string;
  actor?: string;
  project?: string | null;
  method?: string;
  path?: string;
  status?: number;
  target?: string | null;
}

/** An error answered by the API (or a transport failure, status 0). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field?: string;

  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

type UnauthorizedHandler = () => void;
let onUnauthorized: UnauthorizedHandler | null = null;

/** Registers the callback run when a request (other than login) answers 401. */
export function setUnauthorizedHandler(handler: UnauthorizedHandler | null): void {
  onUnauthorized = handler;
}

type Method = "GET" | "POST" | "PATCH" | "PUT" | "DELETE";

export interface RequestOptions {
  /** Query parameters; undefined/null/empty values are left out. */
  query?: Record<string, string | number | null | undefined>;
  body?: unknown;
  /** Do not trigger the global 401 handler (used by login and whoami). */
  quiet401?: boolean;
  /** A raw (non-JSON) body, e.g. a file; sent with `contentType` and X-Requested-With. */
  raw?: { body: BodyInit; contentType: string };
  /** Aborts the request (and a streamed body). */
  signal?: AbortSignal;
}

export function withQuery(path: string, query?: RequestOptions["query"]): string {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === "") continue;
    params.set(key, String(value));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

async function errorFrom(res: Response): Promise<ApiError> {
  let code = "http_" + res.status;
  let message = res.statusText || `HTTP ${res.status}`;
  let field: string | undefined;
  try {
    const text = await res.text();
    if (text) {
      try {
        const parsed = JSON.parse(text) as { error?: { code?: string; message?: string; field?: string } };
        if (parsed && parsed.error) {
          code = parsed.error.code ?? code;
          message = parsed.error.message ?? message;
          field = parsed.error.field ?? undefined;
        } else {
          message = text.slice(0, 300);
        }
      } catch {
        message = text.slice(0, 300);
      }
    }
  } catch {
    // keep the status line
  }
  return new ApiError(res.status, code, message, field);
}

/** Sends a request and answers the response if it is a success; API errors are thrown as ApiError. */
async function send(method: Method, path: string, opts: RequestOptions, accept: string): Promise<Response> {
  const headers: Record<string, string> = { Accept: accept };
  const init: RequestInit = { method, headers, credentials: "same-origin", cache: "no-store", signal: opts.signal };
  if (opts.raw) {
    // Not JSON: the daemon takes a cookie-authenticated write only with X-Requested-With.
    headers["Content-Type"] = opts.raw.contentType;
    headers["X-Requested-With"] = "XMLHttpRequest";
    init.body = opts.raw.body;
  } else if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(withQuery(path, opts.query), init);
  } catch (err) {
    if (err instanceof DOMException && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", err instanceof Error ? err.message : String(err));
  }
  if (!res.ok) {
    const error = await errorFrom(res);
    if (res.status === 401 && !opts.quiet401 && onUnauthorized) onUnauthorized();
    throw error;
  }
  return res;
}

export async function request<T>(method: Method, path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await send(method, path, opts, "application/json");
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return text as unknown as T;
  }
}

export const api = {
  get: <T>(path: string, opts?: RequestOptions) => request<T>("GET", path, opts),
  post: <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>("POST", path, { ...opts, body }),
  patch: <T>(path: string, body?: unknown, opts?: RequestOptions) => request<T>("PATCH", path, { ...opts, body }),
  del: <T>(path: string, opts?: RequestOptions) => request<T>("DELETE", path, opts),
  /** POSTs a file (or other raw bytes) as the body. */
  upload: <T>(path: string, body: BodyInit, contentType: string, opts?: RequestOptions) =>
    request<T>("POST", path, { ...opts, raw: { body, contentType } }),
  /** PUTs a file (or other raw bytes) as the body. */
  put: <T>(path: string, body: BodyInit, contentType: string, opts?: RequestOptions) =>
    request<T>("PUT", path, { ...opts, raw: { body, contentType } }),
  /** GETs a text response to read as it arrives (res.body); abort it with opts.signal. */
  stream: (path: string, opts?: RequestOptions) => send("GET", path, opts ?? {}, "text/plain"),

  whoami: () => request<Whoami>("GET", "/v1/auth/whoami", { quiet401: true }),
  login: (username: string, password: string) =>
    request<unknown>("POST", "/v1/auth/login", { body: { username, password }, quiet401: true }),
  logout: () => request<unknown>("POST", "/v1/auth/logout", { quiet401: true }),
};

/** Encodes one path segment (an id or a name). */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
