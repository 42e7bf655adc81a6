// What the networking sections share: the context every section gets, the
// list/create/delete hook with its error banner, and the building blocks of a
// section (card, table, row with delete button, form fields).
import { useState, type FormEvent, type ReactNode } from "react";
import {
  api,
  seg,
  type EipResource,
  type LoadBalancerResource,
  type NatGatewayResource,
  type NetworkInterfaceResource,
  type PortForwardResource,
  type Resource,
  type SecurityGroupResource,
  type SubnetResource,
  type VpcResource,
} from "../../api";
import { useI18n, type MessageKey, type Translate } from "../../i18n";
import { Card, DeleteButton, ErrorBanner, type Loaded } from "../../components/ui";

import type { Scope } from "../../projectScope";
export type { Scope };

export interface Lists {
  vpcs: VpcResource[];
  subnets: SubnetResource[];
  groups: SecurityGroupResource[];
  interfaces: NetworkInterfaceResource[];
  eips: EipResource[];
  nats: NatGatewayResource[];
  pfs: PortForwardResource[];
  lbs: LoadBalancerResource[];
}

/** What every section needs: the lists, id → name lookups, the scope and reloaders. */
export interface Ctx {
  lists: Lists;
  loads: Record<keyof Lists, Loaded<unknown>>;
  name: (id: string | null | undefined) => string;
  scope: Scope;
  canWrite: boolean;
  reload: Record<keyof Lists, () => void>;
}

// ---------------------------------------------------------------- helpers

/** Runs API calls for one section, keeping its busy flag and last error. */
export function useMutation() {
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

export type Mutation = ReturnType<typeof useMutation>;

/**
 * One kind of resource of the page: its list and load state from the context,
 * plus create / patch / delete calls that run through the section's mutation
 * (busy flag and error banner) and reload the list afterwards (or `after`).
 */
export function useResource<K extends keyof Lists>(ctx: Ctx, key: K, path: string) {
  const m = useMutation();
  const query = { query: ctx.scope };
  const reload = ctx.reload[key];
  const create = (body: unknown, after: () => void = reload) => m.run(() => api.post(path, body, query), after);
  const patch = (r: Resource, body: unknown, after: () => void = reload) =>
    m.run(() => api.patch(`${path}/${seg(r.id)}`, body, query), after);
  const remove = (r: Resource, after: () => void = reload) =>
    void m.run(() => api.del(`${path}/${seg(r.id)}`, query), after);
  /** A create form's submit handler: posts `body()`, then calls `done()` (to clear the form) if that worked. */
  const onCreate = (body: () => unknown, done: () => void, after?: () => void) => async (e: FormEvent) => {
    e.preventDefault();
    if (await create(body(), after)) done();
  };
  return { m, items: ctx.lists[key], loaded: ctx.loads[key], create, patch, remove, onCreate };
}

export type ResourceApi<T> = {
  m: Mutation;
  items: T[];
  loaded: Loaded<unknown>;
};

/** The selected id if it is still offered, else the first option (or ""). */
export function pick(selected: string, options: { id: string }[]): string {
  return options.some((o) => o.id === selected) ? selected : (options[0]?.id ?? "");
}

/** A copy of `set` with `id` added or removed. */
export function toggled(set: ReadonlySet<string>, id: string): ReadonlySet<string> {
  const next = new Set(set);
  if (next.has(id)) next.delete(id);
  else next.add(id);
  return next;
}

/** EIPs that can serve as a listener: neither associated with an interface nor a NAT gateway's. */
export function listenerEips(ctx: Ctx): EipResource[] {
  const nat = new Set(ctx.lists.nats.map((n) => n.spec?.eip).filter((x): x is string => !!x));
  return ctx.lists.eips.filter((e) => !e.spec?.network_interface && !nat.has(e.id));
}

export function protocolLabel(t: Translate, p: string): string {
  return p === "all" ? t("network.protocolAll") : p.toUpperCase();
}

// ---------------------------------------------------------------- building blocks

export function Mono({ children }: { children: ReactNode }) {
  return children ? <code className="net-mono">{children}</code> : <span className="muted">—</span>;
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

/** Number of table columns: the headers shown plus the actions column for writers. */
export function columnCount(head: (string | false)[], canWrite: boolean): number {
  return head.filter((h) => h !== false).length + (canWrite ? 1 : 0);
}

/**
 * A section: a card titled with its count, the error banners, the create form
 * (writers only), an optional note and the table. `kind` prefixes the test ids
 * (`<kind>-card`, `<kind>-table`); `head` lists the column titles (false hides one).
 */
export function ResourceSection({ kind, title, res, ctx, head, form, note, children }: {
  kind: string;
  title: string;
  res: ResourceApi<unknown>;
  ctx: Pick<Ctx, "canWrite">;
  head: (string | false)[];
  form: ReactNode;
  note?: ReactNode;
  children: ReactNode;
}) {
  const { t } = useI18n();
  const { m, items, loaded } = res;
  return (
    <Card
      title={
        <>
          {title} <span className="badge badge-muted net-count">{items.length}</span>
        </>
      }
      testId={`${kind}-card`}
      className="net-card"
    >
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      {loaded.error ? <ErrorBanner error={loaded.error} /> : null}
      {ctx.canWrite ? form : null}
      {note ? <p className="muted small net-note">{note}</p> : null}
      <div className="net-table">
        <table className="table" data-testid={`${kind}-table`}>
          <thead>
            <tr>
              {head.map((h, i) => (h === false ? null : <th key={i}>{h}</th>))}
              {ctx.canWrite ? <th className="actions-col">{t("common.actions")}</th> : null}
            </tr>
          </thead>
          <tbody>
            {children}
            {items.length === 0 ? <EmptyRow cols={columnCount(head, ctx.canWrite)} loading={loaded.loading} /> : null}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

/**
 * One table row (`<kind>-row`, with data-name / data-id) and, for writers, its
 * delete button (after `actions`, more buttons of the row, if given).
 */
export function ResourceRow({ kind, item, ctx, busy, onDelete, className, actions, children }: {
  kind: string;
  item: Resource;
  ctx: Pick<Ctx, "canWrite">;
  busy: boolean;
  onDelete: () => void;
  className?: string;
  actions?: ReactNode;
  children: ReactNode;
}) {
  return (
    <tr data-testid={`${kind}-row`} data-name={item.name} data-id={item.id} className={className}>
      {children}
      {ctx.canWrite ? (
        <td className="actions-col">
          {actions ? <span className="row-actions">{actions}</span> : null}
          <DeleteButton onConfirm={onDelete} disabled={busy} testId={`delete-${kind}-${item.name}`} />
        </td>
      ) : null}
    </tr>
  );
}

/** A labelled form field. */
export function Field({ label, grow, children }: { label: string; grow?: boolean; children: ReactNode }) {
  return (
    <label className={grow ? "field field-grow" : "field"}>
      <span>{label}</span>
      {children}
    </label>
  );
}

/** The required name input every create form starts with. */
export function NameField({ value, onChange, placeholder, testId }: {
  value: string;
  onChange: (value: string) => void;
  placeholder: string;
  testId: string;
}) {
  const { t } = useI18n();
  return (
    <Field label={t("common.name")} grow>
      <input value={value} onChange={(e) => onChange(e.target.value)} required placeholder={placeholder} data-testid={testId} />
    </Field>
  );
}

/** What a parent select offers: VPCs by name, subnets as "name (cidr)". */
const PARENTS = {
  vpc: { list: "vpcs", label: "network.vpc", none: "network.noVpc" },
  subnet: { list: "subnets", label: "network.subnet", none: "network.noSubnet" },
} as const satisfies Record<string, { list: keyof Lists; label: MessageKey; none: MessageKey }>;

/** The required VPC or subnet select of a create form, with a placeholder option when there are none. */
export function ParentSelect({ ctx, of, value, onChange, testId }: {
  ctx: Ctx;
  of: keyof typeof PARENTS;
  value: string;
  onChange: (id: string) => void;
  testId: string;
}) {
  const { t } = useI18n();
  const parent = PARENTS[of];
  const options: (VpcResource | SubnetResource)[] = ctx.lists[parent.list];
  return (
    <Field label={t(parent.label)}>
      <select value={value} onChange={(e) => onChange(e.target.value)} required data-testid={testId}>
        {options.length === 0 ? <option value="">{t(parent.none)}</option> : null}
        {options.map((r) => (
          <option key={r.id} value={r.id}>
            {of === "subnet" ? `${r.name} (${r.spec?.cidr ?? ""})` : r.name}
          </option>
        ))}
      </select>
    </Field>
  );
}

/** The submit button of a create form. */
export function CreateButton({ busy, disabled, testId, label, busyLabel }: {
  busy: boolean;
  disabled?: boolean;
  testId: string;
  label?: string;
  busyLabel?: string;
}) {
  const { t } = useI18n();
  return (
    <button type="submit" className="btn btn-primary" disabled={busy || !!disabled} data-testid={testId}>
      {busy ? (busyLabel ?? t("common.creating")) : (label ?? t("common.create"))}
    </button>
  );
}
