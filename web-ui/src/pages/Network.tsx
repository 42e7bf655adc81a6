// Networking: the VPCs of a project and what lives in them (subnets, security
// groups, network interfaces, elastic IPs, NAT gateways). Every section is a
// card with a create form, a table and per-row actions; API errors show in the
// section's own banner, next to the form that caused them.
import { useMemo, useState, type FormEvent, type ReactNode } from "react";
import {
  api,
  seg,
  type EipResource,
  type List,
  type NatGatewayResource,
  type NetworkInterfaceResource,
  type ProjectResource,
  type Resource,
  type SecurityGroupResource,
  type SgProtocol,
  type SgRule,
  type SubnetResource,
  type VpcResource,
} from "../api";
import { useKindEvents } from "../events";
import { formatTime } from "../format";
import { useI18n, type Translate } from "../i18n";
import { navigate } from "../router";
import { useSession } from "../session";
import { Card, DeleteButton, ErrorBanner, PageHeader, PhaseBadge, useLoad, type Loaded } from "../components/ui";

type Scope = { project: string } | undefined;

interface Lists {
  vpcs: VpcResource[];
  subnets: SubnetResource[];
  groups: SecurityGroupResource[];
  interfaces: NetworkInterfaceResource[];
  eips: EipResource[];
  nats: NatGatewayResource[];
}

/** What every section needs: the lists, id → name lookups, the scope and reloaders. */
interface Ctx {
  lists: Lists;
  loads: Record<keyof Lists, Loaded<unknown>>;
  name: (id: string | null | undefined) => string;
  scope: Scope;
  canWrite: boolean;
  reload: Record<keyof Lists, () => void>;
}

const PROTOCOLS: SgProtocol[] = ["tcp", "udp", "icmp", "all"];

// ---------------------------------------------------------------- helpers

/** Runs API calls for one section, keeping its busy flag and last error. */
function useMutation() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const run = async (fn: () => Promise<unknown>, after?: () => void): Promise<boolean> => {
    setBusy(true);
    setError(null);
    try {
      await fn();
      return true;
    } catch (err) {
      setError(err);
      return false;
    } finally {
      setBusy(false);
      after?.();
    }
  };
  return { busy, error, setError, run };
}

/** The selected id if it is still offered, else the first option (or ""). */
function pick(selected: string, options: { id: string }[]): string {
  return options.some((o) => o.id === selected) ? selected : (options[0]?.id ?? "");
}

function projectFromUrl(): string | null {
  return new URLSearchParams(window.location.search).get("project");
}

function protocolLabel(t: Translate, p: string): string {
  return p === "all" ? t("network.protocolAll") : p.toUpperCase();
}

function Section({ title, count, testId, error, onDismiss, loaded, form, note, children }: {
  title: string;
  count: number;
  testId: string;
  error: unknown;
  onDismiss: () => void;
  loaded: Loaded<unknown>;
  form?: ReactNode;
  note?: ReactNode;
  children: ReactNode;
}) {
  return (
    <Card
      title={
        <>
          {title} <span className="badge badge-muted net-count">{count}</span>
        </>
      }
      testId={testId}
      className="net-card"
    >
      <ErrorBanner error={error} onDismiss={onDismiss} />
      {loaded.error ? <ErrorBanner error={loaded.error} /> : null}
      {form}
      {note ? <p className="muted small net-note">{note}</p> : null}
      <div className="net-table">{children}</div>
    </Card>
  );
}

function EmptyRow({ cols, loading }: { cols: number; loading: boolean }) {
  const { t } = useI18n();
  return (
    <tr>
      <td colSpan={cols} className="muted empty-cell">
        {loading ? t("common.loading") : t("common.empty")}
      </td>
    </tr>
  );
}

function Mono({ children }: { children: ReactNode }) {
  return children ? <code className="net-mono">{children}</code> : <span className="muted">—</span>;
}

// ---------------------------------------------------------------- page

export function NetworkPage() {
  const { t } = useI18n();
  const { who } = useSession();
  const siteAdmin = who.site_admin;
  const canWrite = siteAdmin || who.role === "admin" || who.role === "member";

  // Site admins pick the project (kept in ?project= so a reload stays there).
  const [project, setProjectState] = useState(() => (siteAdmin ? projectFromUrl() : null) ?? who.project);
  const setProject = (next: string) => {
    setProjectState(next);
    navigate(next === who.project ? "/network" : `/network?project=${encodeURIComponent(next)}`, { replace: true });
  };
  const scope: Scope = siteAdmin ? { project } : undefined;

  const projects = useLoad(
    () => (siteAdmin ? api.get<List<ProjectResource>>("/v1/projects") : Promise.resolve({ items: [] })),
    [siteAdmin],
  );
  const vpcs = useLoad(() => api.get<List<VpcResource>>("/v1/vpcs", { query: scope }), [project, siteAdmin]);
  const subnets = useLoad(() => api.get<List<SubnetResource>>("/v1/subnets", { query: scope }), [project, siteAdmin]);
  const groups = useLoad(
    () => api.get<List<SecurityGroupResource>>("/v1/security-groups", { query: scope }),
    [project, siteAdmin],
  );
  const interfaces = useLoad(
    () => api.get<List<NetworkInterfaceResource>>("/v1/network-interfaces", { query: scope }),
    [project, siteAdmin],
  );
  const eips = useLoad(() => api.get<List<EipResource>>("/v1/eips", { query: scope }), [project, siteAdmin]);
  const nats = useLoad(() => api.get<List<NatGatewayResource>>("/v1/nat-gateways", { query: scope }), [project, siteAdmin]);

  useKindEvents(["vpc"], vpcs.reload);
  useKindEvents(["subnet"], subnets.reload);
  useKindEvents(["security_group"], groups.reload);
  useKindEvents(["network_interface"], interfaces.reload);
  useKindEvents(["eip"], eips.reload);
  useKindEvents(["nat_gateway"], nats.reload);

  const lists: Lists = {
    vpcs: vpcs.data?.items ?? [],
    subnets: subnets.data?.items ?? [],
    groups: groups.data?.items ?? [],
    interfaces: interfaces.data?.items ?? [],
    eips: eips.data?.items ?? [],
    nats: nats.data?.items ?? [],
  };

  const names = useMemo(() => {
    const map = new Map<string, string>();
    for (const list of Object.values(lists)) for (const r of list as Resource[]) map.set(r.id, r.name);
    return map;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [vpcs.data, subnets.data, groups.data, interfaces.data, eips.data, nats.data]);

  const reload = {
    vpcs: vpcs.reload,
    subnets: subnets.reload,
    groups: groups.reload,
    interfaces: interfaces.reload,
    eips: eips.reload,
    nats: nats.reload,
  };
  const reloadAll = () => Object.values(reload).forEach((r) => r());

  const ctx: Ctx = {
    lists,
    loads: { vpcs, subnets, groups, interfaces, eips, nats },
    name: (id) => (id ? (names.get(id) ?? id) : "—"),
    scope,
    canWrite,
    reload,
  };

  const projectNames = Array.from(new Set([who.project, project, ...(projects.data?.items ?? []).map((p) => p.name)])).sort();

  return (
    <div className="page" data-testid="network-page">
      <PageHeader
        title={t("network.title")}
        subtitle={t("network.subtitle")}
        actions={
          <>
            {siteAdmin ? (
              <label className="inline-field">
                <span>{t("network.project")}</span>
                <select value={project} onChange={(e) => setProject(e.target.value)} data-testid="network-project">
                  {projectNames.map((p) => (
                    <option key={p} value={p}>
                      {p}
                    </option>
                  ))}
                </select>
              </label>
            ) : null}
            <button type="button" className="btn btn-secondary" onClick={reloadAll} data-testid="network-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      {projects.error ? <ErrorBanner error={projects.error} /> : null}
      {!canWrite ? <p className="muted">{t("network.readOnly")}</p> : null}

      {/* Keyed by project: switching projects starts every form afresh. */}
      <VpcSection key={`vpc-${project}`} ctx={ctx} />
      <SubnetSection key={`subnet-${project}`} ctx={ctx} />
      <SecurityGroupSection key={`sg-${project}`} ctx={ctx} />
      <InterfaceSection key={`eni-${project}`} ctx={ctx} />
      <EipSection key={`eip-${project}`} ctx={ctx} />
      <NatSection key={`nat-${project}`} ctx={ctx} />
    </div>
  );
}

// ---------------------------------------------------------------- VPCs

function VpcSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const [cidr, setCidr] = useState("");
  const items = ctx.lists.vpcs;

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await m.run(
      () => api.post("/v1/vpcs", { name: name.trim(), spec: { cidr: cidr.trim() } }, { query: ctx.scope }),
      ctx.reload.vpcs,
    );
    if (ok) {
      setName("");
      setCidr("");
    }
  };

  const remove = (vpc: VpcResource) =>
    void m.run(() => api.del(`/v1/vpcs/${seg(vpc.id)}`, { query: ctx.scope }), ctx.reload.vpcs);

  const cols = ctx.canWrite ? 5 : 4;
  return (
    <Section
      title={t("network.vpcs")}
      count={items.length}
      testId="vpc-card"
      error={m.error}
      onDismiss={() => m.setError(null)}
      loaded={ctx.loads.vpcs}
      form={
        ctx.canWrite ? (
          <form className="form-row" onSubmit={create} data-testid="vpc-form">
            <label className="field field-grow">
              <span>{t("common.name")}</span>
              <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="prod" data-testid="vpc-name" />
            </label>
            <label className="field">
              <span>{t("network.cidr")}</span>
              <input
                value={cidr}
                onChange={(e) => setCidr(e.target.value)}
                required
                placeholder="10.0.0.0/16"
                data-testid="vpc-cidr"
              />
            </label>
            <button type="submit" className="btn btn-primary" disabled={m.busy} data-testid="vpc-create">
              {m.busy ? t("common.creating") : t("common.create")}
            </button>
          </form>
        ) : null
      }
    >
      <table className="table" data-testid="vpc-table">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("network.cidr")}</th>
            <th>{t("common.phase")}</th>
            <th>{t("common.created")}</th>
            {ctx.canWrite ? <th className="actions-col">{t("common.actions")}</th> : null}
          </tr>
        </thead>
        <tbody>
          {items.map((vpc) => (
            <tr key={vpc.id} data-testid="vpc-row" data-name={vpc.name} data-id={vpc.id}>
              <td className="name-cell">{vpc.name}</td>
              <td>
                <Mono>{vpc.spec?.cidr}</Mono>
              </td>
              <td>
                <PhaseBadge phase={vpc.status?.phase} testId="vpc-phase" />
              </td>
              <td className="nowrap">{formatTime(vpc.created_at, lang)}</td>
              {ctx.canWrite ? (
                <td className="actions-col">
                  <DeleteButton onConfirm={() => remove(vpc)} disabled={m.busy} testId={`delete-vpc-${vpc.name}`} />
                </td>
              ) : null}
            </tr>
          ))}
          {items.length === 0 ? <EmptyRow cols={cols} loading={ctx.loads.vpcs.loading} /> : null}
        </tbody>
      </table>
    </Section>
  );
}

// ---------------------------------------------------------------- subnets

function SubnetSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const [vpcChoice, setVpc] = useState("");
  const [cidr, setCidr] = useState("");
  const items = ctx.lists.subnets;
  const vpc = pick(vpcChoice, ctx.lists.vpcs);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await m.run(
      () => api.post("/v1/subnets", { name: name.trim(), spec: { vpc, cidr: cidr.trim() } }, { query: ctx.scope }),
      ctx.reload.subnets,
    );
    if (ok) {
      setName("");
      setCidr("");
    }
  };

  const remove = (s: SubnetResource) =>
    void m.run(() => api.del(`/v1/subnets/${seg(s.id)}`, { query: ctx.scope }), ctx.reload.subnets);

  const cols = ctx.canWrite ? 5 : 4;
  return (
    <Section
      title={t("network.subnets")}
      count={items.length}
      testId="subnet-card"
      error={m.error}
      onDismiss={() => m.setError(null)}
      loaded={ctx.loads.subnets}
      form={
        ctx.canWrite ? (
          <form className="form-row" onSubmit={create} data-testid="subnet-form">
            <label className="field field-grow">
              <span>{t("common.name")}</span>
              <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="web" data-testid="subnet-name" />
            </label>
            <label className="field">
              <span>{t("network.vpc")}</span>
              <select value={vpc} onChange={(e) => setVpc(e.target.value)} required data-testid="subnet-vpc">
                {ctx.lists.vpcs.length === 0 ? <option value="">{t("network.noVpc")}</option> : null}
                {ctx.lists.vpcs.map((v) => (
                  <option key={v.id} value={v.id}>
                    {v.name}
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span>{t("network.cidr")}</span>
              <input
                value={cidr}
                onChange={(e) => setCidr(e.target.value)}
                required
                placeholder={subnetHint(ctx.lists.vpcs.find((v) => v.id === vpc)?.spec?.cidr)}
                data-testid="subnet-cidr"
              />
            </label>
            <button type="submit" className="btn btn-primary" disabled={m.busy || !vpc} data-testid="subnet-create">
              {m.busy ? t("common.creating") : t("common.create")}
            </button>
          </form>
        ) : null
      }
    >
      <table className="table" data-testid="subnet-table">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("network.vpc")}</th>
            <th>{t("network.cidr")}</th>
            <th>{t("common.created")}</th>
            {ctx.canWrite ? <th className="actions-col">{t("common.actions")}</th> : null}
          </tr>
        </thead>
        <tbody>
          {items.map((s) => (
            <tr key={s.id} data-testid="subnet-row" data-name={s.name} data-id={s.id}>
              <td className="name-cell">{s.name}</td>
              <td>{ctx.name(s.spec?.vpc)}</td>
              <td>
                <Mono>{s.spec?.cidr}</Mono>
              </td>
              <td className="nowrap">{formatTime(s.created_at, lang)}</td>
              {ctx.canWrite ? (
                <td className="actions-col">
                  <DeleteButton onConfirm={() => remove(s)} disabled={m.busy} testId={`delete-subnet-${s.name}`} />
                </td>
              ) : null}
            </tr>
          ))}
          {items.length === 0 ? <EmptyRow cols={cols} loading={ctx.loads.subnets.loading} /> : null}
        </tbody>
      </table>
    </Section>
  );
}

/** A placeholder inside the VPC: "10.0.0.0/16" → "10.0.1.0/24". */
function subnetHint(vpcCidr: string | undefined): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(vpcCidr ?? "");
  if (!m) return "10.0.1.0/24";
  const prefix = Number(m[5]);
  if (prefix <= 16) return `${m[1]}.${m[2]}.1.0/24`;
  if (prefix < 24) return `${m[1]}.${m[2]}.${m[3]}.0/24`;
  return `${m[1]}.${m[2]}.${m[3]}.${m[4]}/${Math.min(prefix + 1, 28)}`;
}

// ---------------------------------------------------------------- security groups

function SecurityGroupSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const [vpcChoice, setVpc] = useState("");
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const items = ctx.lists.groups;
  const vpc = pick(vpcChoice, ctx.lists.vpcs);

  const toggle = (id: string) =>
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await m.run(
      () => api.post("/v1/security-groups", { name: name.trim(), spec: { vpc, ingress: [] } }, { query: ctx.scope }),
      ctx.reload.groups,
    );
    if (ok) setName("");
  };

  const remove = (g: SecurityGroupResource) =>
    void m.run(() => api.del(`/v1/security-groups/${seg(g.id)}`, { query: ctx.scope }), ctx.reload.groups);

  const cols = ctx.canWrite ? 5 : 4;
  return (
    <Section
      title={t("network.securityGroups")}
      count={items.length}
      testId="sg-card"
      error={m.error}
      onDismiss={() => m.setError(null)}
      loaded={ctx.loads.groups}
      note={t("network.sgNote")}
      form={
        ctx.canWrite ? (
          <form className="form-row" onSubmit={create} data-testid="sg-form">
            <label className="field field-grow">
              <span>{t("common.name")}</span>
              <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="web-in" data-testid="sg-name" />
            </label>
            <label className="field">
              <span>{t("network.vpc")}</span>
              <select value={vpc} onChange={(e) => setVpc(e.target.value)} required data-testid="sg-vpc">
                {ctx.lists.vpcs.length === 0 ? <option value="">{t("network.noVpc")}</option> : null}
                {ctx.lists.vpcs.map((v) => (
                  <option key={v.id} value={v.id}>
                    {v.name}
                  </option>
                ))}
              </select>
            </label>
            <button type="submit" className="btn btn-primary" disabled={m.busy || !vpc} data-testid="sg-create">
              {m.busy ? t("common.creating") : t("common.create")}
            </button>
          </form>
        ) : null
      }
    >
      <table className="table" data-testid="sg-table">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("network.vpc")}</th>
            <th>{t("network.rules")}</th>
            <th />
            {ctx.canWrite ? <th className="actions-col">{t("common.actions")}</th> : null}
          </tr>
        </thead>
        <tbody>
          {items.flatMap((g) => {
            const expanded = open.has(g.id);
            const rules = g.spec?.ingress ?? [];
            const rows = [
              <tr key={g.id} data-testid="sg-row" data-name={g.name} data-id={g.id} className={expanded ? "net-open" : undefined}>
                <td className="name-cell">{g.name}</td>
                <td>{ctx.name(g.spec?.vpc)}</td>
                <td data-testid="sg-rule-count">{rules.length}</td>
                <td>
                  <button
                    type="button"
                    className="btn btn-ghost btn-small"
                    aria-expanded={expanded}
                    onClick={() => toggle(g.id)}
                    data-testid="sg-rules-toggle"
                  >
                    {expanded ? "▾ " : "▸ "}
                    {ctx.canWrite ? t("network.editRules") : t("network.showRules")}
                  </button>
                </td>
                {ctx.canWrite ? (
                  <td className="actions-col">
                    <DeleteButton onConfirm={() => remove(g)} disabled={m.busy} testId={`delete-sg-${g.name}`} />
                  </td>
                ) : null}
              </tr>,
            ];
            if (expanded) {
              rows.push(
                <tr key={`${g.id}-rules`} className="net-subrow">
                  <td colSpan={cols}>
                    {/* Remounted when the stored group changes, so the draft starts from it. */}
                    <RulesEditor
                      key={`${g.id}:${g.generation ?? 0}`}
                      group={g}
                      peers={items.filter((o) => o.spec?.vpc === g.spec?.vpc)}
                      ctx={ctx}
                    />
                  </td>
                </tr>,
              );
            }
            return rows;
          })}
          {items.length === 0 ? <EmptyRow cols={cols} loading={ctx.loads.groups.loading} /> : null}
        </tbody>
      </table>
    </Section>
  );
}

function sameRules(a: SgRule[], b: SgRule[]): boolean {
  const norm = (r: SgRule) => [r.protocol, r.ports ?? "", r.source_cidr ?? "", r.source_group ?? ""].join("|");
  return a.length === b.length && a.every((r, i) => norm(r) === norm(b[i]));
}

/** The rules of one group: a draft list edited locally and saved as a whole (PATCH). */
function RulesEditor({ group, peers, ctx }: { group: SecurityGroupResource; peers: SecurityGroupResource[]; ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const saved = group.spec?.ingress ?? [];
  const [draft, setDraft] = useState<SgRule[]>(saved);
  const [protocol, setProtocol] = useState<SgProtocol>("tcp");
  const [ports, setPorts] = useState("");
  const [sourceKind, setSourceKind] = useState<"cidr" | "group">("cidr");
  const [cidr, setCidr] = useState("");
  const [sourceChoice, setSource] = useState("");
  const dirty = !sameRules(draft, saved);
  const hasPorts = protocol === "tcp" || protocol === "udp";
  const source = pick(sourceChoice, peers);

  const add = (e: FormEvent) => {
    e.preventDefault();
    const rule: SgRule = { protocol };
    if (hasPorts && ports.trim()) rule.ports = ports.trim();
    if (sourceKind === "cidr") rule.source_cidr = cidr.trim();
    else rule.source_group = source;
    setDraft((d) => [...d, rule]);
    setPorts("");
    setCidr("");
  };

  const save = () =>
    void m.run(
      () => api.patch(`/v1/security-groups/${seg(group.id)}`, { spec: { ingress: draft } }, { query: ctx.scope }),
      ctx.reload.groups,
    );

  return (
    <div className="net-rules" data-testid="sg-rules" data-group={group.name}>
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      {draft.length === 0 ? (
        <p className="muted small">{t("network.noRules")}</p>
      ) : (
        <table className="table table-compact net-rules-table">
          <thead>
            <tr>
              <th>{t("network.protocol")}</th>
              <th>{t("network.ports")}</th>
              <th>{t("network.source")}</th>
              {ctx.canWrite ? <th className="actions-col" /> : null}
            </tr>
          </thead>
          <tbody>
            {draft.map((r, i) => (
              <tr key={i} data-testid="sg-rule">
                <td>{protocolLabel(t, r.protocol)}</td>
                <td>
                  {r.protocol === "tcp" || r.protocol === "udp" ? (
                    r.ports ? <code className="net-mono">{r.ports}</code> : <span className="muted">{t("network.allPorts")}</span>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td>
                  {r.source_group ? (
                    <span>
                      <span className="muted small">{t("network.sourceGroup")}:</span> {ctx.name(r.source_group)}
                    </span>
                  ) : (
                    <code className="net-mono">{r.source_cidr}</code>
                  )}
                </td>
                {ctx.canWrite ? (
                  <td className="actions-col">
                    <button
                      type="button"
                      className="btn btn-ghost btn-small"
                      onClick={() => setDraft((d) => d.filter((_, j) => j !== i))}
                      data-testid="sg-rule-remove"
                    >
                      {t("network.removeRule")}
                    </button>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {ctx.canWrite ? (
        <>
          <form className="form-row net-rule-form" onSubmit={add} data-testid="sg-rule-form">
            <label className="field">
              <span>{t("network.protocol")}</span>
              <select value={protocol} onChange={(e) => setProtocol(e.target.value as SgProtocol)} data-testid="sg-rule-protocol">
                {PROTOCOLS.map((p) => (
                  <option key={p} value={p}>
                    {protocolLabel(t, p)}
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span>{t("network.ports")}</span>
              <input
                value={hasPorts ? ports : ""}
                onChange={(e) => setPorts(e.target.value)}
                disabled={!hasPorts}
                placeholder={hasPorts ? t("network.portsHint") : "—"}
                size={12}
                data-testid="sg-rule-ports"
              />
            </label>
            <label className="field">
              <span>{t("network.source")}</span>
              <select
                value={sourceKind}
                onChange={(e) => setSourceKind(e.target.value as "cidr" | "group")}
                data-testid="sg-rule-source-kind"
              >
                <option value="cidr">{t("network.sourceCidr")}</option>
                <option value="group">{t("network.sourceGroup")}</option>
              </select>
            </label>
            {sourceKind === "cidr" ? (
              <label className="field">
                <span>{t("network.cidr")}</span>
                <input
                  value={cidr}
                  onChange={(e) => setCidr(e.target.value)}
                  required
                  placeholder="0.0.0.0/0"
                  size={16}
                  data-testid="sg-rule-source-cidr"
                />
              </label>
            ) : (
              <label className="field">
                <span>{t("network.sourceGroup")}</span>
                <select value={source} onChange={(e) => setSource(e.target.value)} required data-testid="sg-rule-source-group">
                  {peers.map((p) => (
                    <option key={p.id} value={p.id}>
                      {p.name}
                    </option>
                  ))}
                </select>
              </label>
            )}
            <button type="submit" className="btn btn-secondary" data-testid="sg-rule-add">
              {t("network.addRule")}
            </button>
          </form>
          <div className="net-rules-actions">
            {dirty ? <span className="badge badge-warn">{t("network.unsaved")}</span> : null}
            <button type="button" className="btn btn-ghost btn-small" disabled={!dirty || m.busy} onClick={() => setDraft(saved)}>
              {t("network.discard")}
            </button>
            <button type="button" className="btn btn-primary btn-small" disabled={!dirty || m.busy} onClick={save} data-testid="sg-rules-save">
              {m.busy ? t("network.saving") : t("network.saveRules")}
            </button>
          </div>
        </>
      ) : null}
    </div>
  );
}

// ---------------------------------------------------------------- network interfaces

function InterfaceSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const [subnetChoice, setSubnet] = useState("");
  const [ip, setIp] = useState("");
  const [chosen, setChosen] = useState<ReadonlySet<string>>(new Set());
  const items = ctx.lists.interfaces;
  const subnet = pick(subnetChoice, ctx.lists.subnets);
  const subnetVpc = ctx.lists.subnets.find((s) => s.id === subnet)?.spec?.vpc;
  const offered = ctx.lists.groups.filter((g) => subnetVpc && g.spec?.vpc === subnetVpc);
  // Only groups of the chosen subnet's VPC are sent.
  const selected = offered.filter((g) => chosen.has(g.id)).map((g) => g.id);

  const toggle = (id: string) =>
    setChosen((prev) => {
      const next = new Set(prev);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const spec: Record<string, unknown> = { subnet, security_groups: selected };
    if (ip.trim()) spec.private_ip = ip.trim();
    const ok = await m.run(
      () => api.post("/v1/network-interfaces", { name: name.trim(), spec }, { query: ctx.scope }),
      ctx.reload.interfaces,
    );
    if (ok) {
      setName("");
      setIp("");
      setChosen(new Set());
    }
  };

  const remove = (n: NetworkInterfaceResource) =>
    void m.run(() => api.del(`/v1/network-interfaces/${seg(n.id)}`, { query: ctx.scope }), () => {
      ctx.reload.interfaces();
      ctx.reload.eips();
    });

  const cols = ctx.canWrite ? 6 : 5;
  return (
    <Section
      title={t("network.interfaces")}
      count={items.length}
      testId="eni-card"
      error={m.error}
      onDismiss={() => m.setError(null)}
      loaded={ctx.loads.interfaces}
      form={
        ctx.canWrite ? (
          <form className="net-form-stack" onSubmit={create} data-testid="eni-form">
            <div className="form-row">
              <label className="field field-grow">
                <span>{t("common.name")}</span>
                <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="web-1" data-testid="eni-name" />
              </label>
              <label className="field">
                <span>{t("network.subnet")}</span>
                <select
                  value={subnet}
                  onChange={(e) => {
                    setSubnet(e.target.value);
                    setChosen(new Set());
                  }}
                  required
                  data-testid="eni-subnet"
                >
                  {ctx.lists.subnets.length === 0 ? <option value="">{t("network.noSubnet")}</option> : null}
                  {ctx.lists.subnets.map((s) => (
                    <option key={s.id} value={s.id}>
                      {s.name} ({s.spec?.cidr})
                    </option>
                  ))}
                </select>
              </label>
              <label className="field">
                <span>{t("network.privateIp")}</span>
                <input
                  value={ip}
                  onChange={(e) => setIp(e.target.value)}
                  placeholder={t("network.automatic")}
                  size={16}
                  data-testid="eni-ip"
                />
              </label>
              <button type="submit" className="btn btn-primary" disabled={m.busy || !subnet} data-testid="eni-create">
                {m.busy ? t("common.creating") : t("common.create")}
              </button>
            </div>
            <fieldset className="net-checks" data-testid="eni-groups">
              <legend>{t("network.securityGroups")}</legend>
              {offered.length === 0 ? (
                <span className="muted small">{subnet ? t("network.noGroupsInVpc") : t("network.pickSubnet")}</span>
              ) : (
                offered.map((g) => (
                  <label key={g.id} className="net-check">
                    <input
                      type="checkbox"
                      checked={chosen.has(g.id)}
                      onChange={() => toggle(g.id)}
                      value={g.id}
                      data-testid="eni-group"
                      data-name={g.name}
                    />
                    {g.name}
                  </label>
                ))
              )}
            </fieldset>
          </form>
        ) : null
      }
    >
      <table className="table" data-testid="eni-table">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("network.subnet")}</th>
            <th>{t("network.privateIp")}</th>
            <th>{t("network.securityGroups")}</th>
            <th>{t("common.phase")}</th>
            {ctx.canWrite ? <th className="actions-col">{t("common.actions")}</th> : null}
          </tr>
        </thead>
        <tbody>
          {items.map((n) => {
            const gs = n.spec?.security_groups ?? [];
            return (
              <tr key={n.id} data-testid="eni-row" data-name={n.name} data-id={n.id}>
                <td className="name-cell">{n.name}</td>
                <td>{ctx.name(n.spec?.subnet)}</td>
                <td>
                  <Mono>{n.spec?.private_ip ?? (typeof n.status?.private_ip === "string" ? n.status.private_ip : "")}</Mono>
                </td>
                <td>{gs.length ? gs.map((g) => ctx.name(g)).join(", ") : <span className="muted">{t("common.none")}</span>}</td>
                <td>
                  <PhaseBadge phase={n.status?.phase} />
                </td>
                {ctx.canWrite ? (
                  <td className="actions-col">
                    <DeleteButton onConfirm={() => remove(n)} disabled={m.busy} testId={`delete-eni-${n.name}`} />
                  </td>
                ) : null}
              </tr>
            );
          })}
          {items.length === 0 ? <EmptyRow cols={cols} loading={ctx.loads.interfaces.loading} /> : null}
        </tbody>
      </table>
    </Section>
  );
}

// ---------------------------------------------------------------- elastic IPs

function EipSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const items = ctx.lists.eips;

  // An interface takes one EIP: offer those that have none.
  const taken = new Set(items.map((e) => e.spec?.network_interface).filter((x): x is string => !!x));
  const free = ctx.lists.interfaces.filter((n) => !taken.has(n.id));

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const ok = await m.run(() => api.post("/v1/eips", { name: name.trim() }, { query: ctx.scope }), ctx.reload.eips);
    if (ok) setName("");
  };

  const associate = (eip: EipResource, eni: string | null) =>
    void m.run(
      () => api.patch(`/v1/eips/${seg(eip.id)}`, { spec: { network_interface: eni } }, { query: ctx.scope }),
      ctx.reload.eips,
    );

  const remove = (eip: EipResource) =>
    void m.run(() => api.del(`/v1/eips/${seg(eip.id)}`, { query: ctx.scope }), ctx.reload.eips);

  const cols = ctx.canWrite ? 5 : 3;
  return (
    <Section
      title={t("network.eips")}
      count={items.length}
      testId="eip-card"
      error={m.error}
      onDismiss={() => m.setError(null)}
      loaded={ctx.loads.eips}
      note={t("network.eipNote")}
      form={
        ctx.canWrite ? (
          <form className="form-row" onSubmit={create} data-testid="eip-form">
            <label className="field field-grow">
              <span>{t("common.name")}</span>
              <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="web-public" data-testid="eip-name" />
            </label>
            <button type="submit" className="btn btn-primary" disabled={m.busy} data-testid="eip-create">
              {m.busy ? t("network.allocating") : t("network.allocate")}
            </button>
          </form>
        ) : null
      }
    >
      <table className="table" data-testid="eip-table">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("network.publicIp")}</th>
            <th>{t("network.interface")}</th>
            {ctx.canWrite ? <th>{t("network.association")}</th> : null}
            {ctx.canWrite ? <th className="actions-col">{t("common.actions")}</th> : null}
          </tr>
        </thead>
        <tbody>
          {items.map((eip) => (
            <EipRow key={eip.id} eip={eip} free={free} ctx={ctx} busy={m.busy} onAssociate={associate} onRemove={remove} />
          ))}
          {items.length === 0 ? <EmptyRow cols={cols} loading={ctx.loads.eips.loading} /> : null}
        </tbody>
      </table>
    </Section>
  );
}

function EipRow({ eip, free, ctx, busy, onAssociate, onRemove }: {
  eip: EipResource;
  free: NetworkInterfaceResource[];
  ctx: Ctx;
  busy: boolean;
  onAssociate: (eip: EipResource, eni: string | null) => void;
  onRemove: (eip: EipResource) => void;
}) {
  const { t } = useI18n();
  const [choice, setChoice] = useState("");
  const eni = eip.spec?.network_interface ?? null;
  const target = pick(choice, free);
  return (
    <tr data-testid="eip-row" data-name={eip.name} data-id={eip.id}>
      <td className="name-cell">{eip.name}</td>
      <td>
        <Mono>{eip.spec?.public_ip}</Mono>
      </td>
      <td data-testid="eip-interface">{eni ? ctx.name(eni) : <span className="muted">—</span>}</td>
      {ctx.canWrite ? (
        <td>
          {eni ? (
            <button type="button" className="btn btn-secondary btn-small" disabled={busy}
              onClick={() => onAssociate(eip, null)} data-testid="eip-disassociate">
              {t("network.disassociate")}
            </button>
          ) : (
            <span className="net-inline">
              <select value={target} onChange={(e) => setChoice(e.target.value)} disabled={free.length === 0}
                aria-label={t("network.interface")} data-testid="eip-target">
                {free.length === 0 ? <option value="">{t("network.noFreeInterface")}</option> : null}
                {free.map((n) => (
                  <option key={n.id} value={n.id}>
                    {n.name}
                  </option>
                ))}
              </select>
              <button type="button" className="btn btn-secondary btn-small" disabled={busy || !target}
                onClick={() => onAssociate(eip, target)} data-testid="eip-associate">
                {t("network.associate")}
              </button>
            </span>
          )}
        </td>
      ) : null}
      {ctx.canWrite ? (
        <td className="actions-col">
          <DeleteButton onConfirm={() => onRemove(eip)} disabled={busy} testId={`delete-eip-${eip.name}`} />
        </td>
      ) : null}
    </tr>
  );
}

// ---------------------------------------------------------------- NAT gateways

function NatSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const [subnetChoice, setSubnet] = useState("");
  const [eip, setEip] = useState("");
  const items = ctx.lists.nats;
  const subnet = pick(subnetChoice, ctx.lists.subnets);

  // A NAT gateway needs an EIP that is neither associated nor used by another gateway.
  const usedByNat = new Set(items.map((n) => n.spec?.eip).filter((x): x is string => !!x));
  const freeEips = ctx.lists.eips.filter((e) => !e.spec?.network_interface && !usedByNat.has(e.id));
  const eipValue = freeEips.some((e) => e.id === eip) ? eip : "";

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const spec: Record<string, unknown> = { subnet };
    if (eipValue) spec.eip = eipValue;
    const ok = await m.run(() => api.post("/v1/nat-gateways", { name: name.trim(), spec }, { query: ctx.scope }), () => {
      ctx.reload.nats();
      ctx.reload.eips();
    });
    if (ok) {
      setName("");
      setEip("");
    }
  };

  const remove = (n: NatGatewayResource) =>
    void m.run(() => api.del(`/v1/nat-gateways/${seg(n.id)}`, { query: ctx.scope }), ctx.reload.nats);

  const eipLabel = (id: string) => {
    const e = ctx.lists.eips.find((x) => x.id === id);
    return e ? `${e.name}${e.spec?.public_ip ? ` (${e.spec.public_ip})` : ""}` : id;
  };

  const cols = ctx.canWrite ? 5 : 4;
  return (
    <Section
      title={t("network.natGateways")}
      count={items.length}
      testId="natgw-card"
      error={m.error}
      onDismiss={() => m.setError(null)}
      loaded={ctx.loads.nats}
      note={t("network.natNote")}
      form={
        ctx.canWrite ? (
          <form className="form-row" onSubmit={create} data-testid="natgw-form">
            <label className="field field-grow">
              <span>{t("common.name")}</span>
              <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="web-egress" data-testid="natgw-name" />
            </label>
            <label className="field">
              <span>{t("network.subnet")}</span>
              <select value={subnet} onChange={(e) => setSubnet(e.target.value)} required data-testid="natgw-subnet">
                {ctx.lists.subnets.length === 0 ? <option value="">{t("network.noSubnet")}</option> : null}
                {ctx.lists.subnets.map((s) => (
                  <option key={s.id} value={s.id}>
                    {s.name} ({s.spec?.cidr})
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span>{t("network.eip")}</span>
              <select value={eipValue} onChange={(e) => setEip(e.target.value)} data-testid="natgw-eip">
                <option value="">{t("network.uplink")}</option>
                {freeEips.map((e) => (
                  <option key={e.id} value={e.id}>
                    {eipLabel(e.id)}
                  </option>
                ))}
              </select>
            </label>
            <button type="submit" className="btn btn-primary" disabled={m.busy || !subnet} data-testid="natgw-create">
              {m.busy ? t("common.creating") : t("common.create")}
            </button>
          </form>
        ) : null
      }
    >
      <table className="table" data-testid="natgw-table">
        <thead>
          <tr>
            <th>{t("common.name")}</th>
            <th>{t("network.subnet")}</th>
            <th>{t("network.eip")}</th>
            <th>{t("common.created")}</th>
            {ctx.canWrite ? <th className="actions-col">{t("common.actions")}</th> : null}
          </tr>
        </thead>
        <tbody>
          {items.map((n) => (
            <tr key={n.id} data-testid="natgw-row" data-name={n.name} data-id={n.id}>
              <td className="name-cell">{n.name}</td>
              <td>{ctx.name(n.spec?.subnet)}</td>
              <td>{n.spec?.eip ? eipLabel(n.spec.eip) : <span className="muted">{t("network.uplink")}</span>}</td>
              <td className="nowrap">{formatTime(n.created_at, lang)}</td>
              {ctx.canWrite ? (
                <td className="actions-col">
                  <DeleteButton onConfirm={() => remove(n)} disabled={m.busy} testId={`delete-natgw-${n.name}`} />
                </td>
              ) : null}
            </tr>
          ))}
          {items.length === 0 ? <EmptyRow cols={cols} loading={ctx.loads.nats.loading} /> : null}
        </tbody>
      </table>
    </Section>
  );
}
