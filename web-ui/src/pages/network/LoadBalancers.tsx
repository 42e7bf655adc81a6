// L4 load balancers: a listener on an elastic IP or an internal VIP, spreading
// over weighted backends; health checks mark failing backends down.
import { useState } from "react";
import type { BackendSpec, LoadBalancerResource } from "../../api";
import { useI18n, type Translate } from "../../i18n";
import { CreateButton, Field, Mono, NameField, ParentSelect, ResourceRow, ResourceSection, listenerEips, pick, useResource, type Ctx } from "./shared";

/** Parse "10.0.1.5:8080, 10.0.1.6:8080*2" into backends; throws naming the bad entry. */
export function parseBackends(text: string, t: Translate): BackendSpec[] {
  return text
    .split(/[,\s]+/)
    .filter((x) => x)
    .map((entry) => {
      const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})(?:\*(\d{1,3}))?$/.exec(entry);
      const port = Number(m?.[2]);
      const weight = m?.[3] ? Number(m[3]) : 1;
      const ok = m && m[1].split(".").every((o) => Number(o) <= 255) && port >= 1 && port <= 65535 && weight >= 1 && weight <= 100;
      if (!ok) throw new Error(t("network.backendsBad", { entry }));
      return { ip: m[1], port, weight };
    });
}

/** A backend as the row shows it: the spec's address and weight, with the health from the status if known. */
interface BackendView {
  ip: string;
  port: number;
  weight?: number;
  healthy?: boolean;
}

function backendViews(lb: LoadBalancerResource): BackendView[] {
  const health = (lb.status?.backends as BackendView[] | undefined) ?? [];
  const spec = lb.spec?.backends ?? health;
  return spec.map((b) => ({ ...b, healthy: health.find((h) => h.ip === b.ip && h.port === b.port)?.healthy }));
}

export function LoadBalancerSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const res = useResource(ctx, "lbs", "/v1/load-balancers");
  const { m, items } = res;
  const [name, setName] = useState("");
  const [vpcChoice, setVpc] = useState("");
  const [where, setWhere] = useState("");
  const [protocol, setProtocol] = useState("tcp");
  const [port, setPort] = useState("80");
  const [backends, setBackends] = useState("");
  const [affinity, setAffinity] = useState("none");
  const [vip, setVip] = useState("");
  const [interval, setHealthInterval] = useState("5");
  const vpc = pick(vpcChoice, ctx.lists.vpcs);

  // Listen on a subnet of the VPC (internal VIP) or on a free elastic IP.
  const subnets = ctx.lists.subnets.filter((s) => s.spec?.vpc === vpc);
  const freeEips = listenerEips(ctx);
  const places = [...subnets.map((s) => ({ id: `subnet:${s.id}`, label: `${t("network.internalVip")} ${s.name}` })),
    ...freeEips.map((e) => ({ id: `eip:${e.id}`, label: `${t("network.eip")} ${e.name} (${e.spec?.public_ip})` }))];
  const place = pick(where, places);

  const submit = res.onCreate(
    () => {
      const [kind, id] = place.split(":");
      const listener: Record<string, unknown> = { protocol, port: Number(port), [kind]: id };
      if (kind === "subnet" && vip.trim()) listener.vip = vip.trim();
      const health = interval === "off" ? null : { interval_seconds: Number(interval), timeout_seconds: Math.min(2, Number(interval)) };
      return {
        name: name.trim(),
        spec: { vpc, listener, backends: parseBackends(backends, t), affinity, health_check: health },
      };
    },
    () => {
      setName("");
      setVip("");
      setBackends("");
    },
  );
  const create: typeof submit = async (e) => {
    try {
      parseBackends(backends, t);
    } catch (err) {
      e.preventDefault();
      m.setError(err);
      return;
    }
    await submit(e);
  };

  return (
    <ResourceSection
      kind="lb"
      title={t("network.loadBalancers")}
      res={res}
      ctx={ctx}
      head={[t("common.name"), t("network.listener"), t("network.backends"), t("network.affinity")]}
      note={t("network.lbNote")}
      form={
        <form className="form-row" onSubmit={create} data-testid="lb-form">
          <NameField value={name} onChange={setName} placeholder="web-lb" testId="lb-name" />
          <ParentSelect ctx={ctx} of="vpc" value={vpc} onChange={setVpc} testId="lb-vpc" />
          <Field label={t("network.listenOn")}>
            <select value={place} onChange={(e) => setWhere(e.target.value)} required data-testid="lb-listen">
              {places.length === 0 ? <option value="">{t("network.noSubnet")}</option> : null}
              {places.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.label}
                </option>
              ))}
            </select>
          </Field>
          {place.startsWith("subnet:") ? (
            <Field label={t("network.vip")}>
              <input value={vip} onChange={(e) => setVip(e.target.value)} placeholder={t("network.vipAuto")} data-testid="lb-vip" />
            </Field>
          ) : null}
          <Field label={t("network.protocol")}>
            <select value={protocol} onChange={(e) => setProtocol(e.target.value)} data-testid="lb-protocol">
              <option value="tcp">TCP</option>
              <option value="udp">UDP</option>
            </select>
          </Field>
          <Field label={t("network.port")}>
            <input value={port} onChange={(e) => setPort(e.target.value)} required inputMode="numeric" data-testid="lb-port" />
          </Field>
          <Field label={t("network.backends")} grow>
            <input value={backends} onChange={(e) => setBackends(e.target.value)} placeholder={t("network.backendsHint")} data-testid="lb-backends" />
          </Field>
          <Field label={t("network.affinity")}>
            <select value={affinity} onChange={(e) => setAffinity(e.target.value)} data-testid="lb-affinity">
              <option value="none">{t("network.affinityNone")}</option>
              <option value="source_ip">{t("network.affinitySource")}</option>
            </select>
          </Field>
          <Field label={t("network.healthCheck")}>
            <select value={interval} onChange={(e) => setHealthInterval(e.target.value)} data-testid="lb-health">
              {["1", "5", "10", "30"].map((s) => (
                <option key={s} value={s}>
                  {s}
                </option>
              ))}
              <option value="off">{t("network.healthOff")}</option>
            </select>
          </Field>
          <CreateButton busy={m.busy} disabled={!vpc || !place} testId="lb-create" />
        </form>
      }
    >
      {items.map((lb) => (
        <LbRow key={lb.id} lb={lb} ctx={ctx} busy={m.busy} onRemove={() => res.remove(lb)} />
      ))}
    </ResourceSection>
  );
}

/** A backend's badge: green when healthy, red when down, grey before the first check reports. */
function healthBadge(t: Translate, healthy: boolean | undefined): [string, string] {
  if (healthy === undefined) return ["badge badge-muted", t("network.healthUnknown")];
  return healthy ? ["badge badge-ok", t("network.healthy")] : ["badge badge-bad", t("network.unhealthy")];
}

function LbRow({ lb, ctx, busy, onRemove }: { lb: LoadBalancerResource; ctx: Ctx; busy: boolean; onRemove: () => void }) {
  const { t } = useI18n();
  const l = lb.spec?.listener ?? {};
  const backends = backendViews(lb);
  const address = (lb.status?.address as string | undefined) ?? l.vip ?? "";
  return (
    <ResourceRow kind="lb" item={lb} ctx={ctx} busy={busy} onDelete={onRemove}>
      <td className="name-cell">{lb.name}</td>
      <td data-testid="lb-listener">
        <Mono>{`${address}:${l.port ?? ""}/${l.protocol ?? ""}`}</Mono>
      </td>
      <td className="net-badges" data-testid="lb-backend-list">
        {backends.length === 0 ? <span className="muted">—</span> : null}
        {backends.map((b) => {
          const [className, health] = healthBadge(t, b.healthy);
          return (
            <span key={`${b.ip}:${b.port}`} className={className} data-testid="lb-backend" data-healthy={String(b.healthy ?? "")}>
              {`${b.ip}:${b.port}${(b.weight ?? 1) > 1 ? `*${b.weight}` : ""}`} {health}
            </span>
          );
        })}
      </td>
      <td>{lb.spec?.affinity === "source_ip" ? t("network.affinitySource") : t("network.affinityNone")}</td>
    </ResourceRow>
  );
}
