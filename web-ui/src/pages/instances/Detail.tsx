// The detail panel of one instance: two tabs, Status (what it runs, where,
// how its last run ended, and its conditions) and Console (the live serial
// console, or its log). The console (with xterm.js) is a chunk of its own,
// fetched when the tab is first opened.
import { lazy, Suspense, useState, type ReactNode } from "react";
import { formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { Card, PhaseBadge } from "../../components/ui";
import { Mono } from "../network/shared";
import { POLICY_LABEL } from "./Create";
import { formatBootTime, formatMib, type Ctx, type InstanceResource } from "./shared";

type Tab = "status" | "console";

const InstanceConsole = lazy(() => import("./Console").then((m) => ({ default: m.InstanceConsole })));

export function InstanceDetail({ ctx, i }: { ctx: Ctx; i: InstanceResource }) {
  const { t } = useI18n();
  const [tab, setTab] = useState<Tab>("status");
  // The console (live or log) needs the member role, as every change does.
  const tabs: { id: Tab; label: string }[] = [
    { id: "status", label: t("instances.tabStatus") },
    ...(ctx.canWrite ? [{ id: "console" as const, label: t("instances.tabConsole") }] : []),
  ];
  return (
    <Card
      title={t("instances.detail", { name: i.name })}
      testId="instance-detail"
      className="net-card inst-detail"
      actions={
        <button type="button" className="btn btn-ghost btn-small" onClick={() => ctx.select(null)}
          data-testid="instance-close">
          {t("instances.close")}
        </button>
      }
    >
      <div data-testid="instance-detail-body" data-name={i.name} data-phase={i.status?.phase ?? ""}>
        <div className="inst-tabs" role="tablist">
          {tabs.map((x) => (
            <button key={x.id} type="button" role="tab" aria-selected={tab === x.id}
              className={`inst-tab ${tab === x.id ? "inst-tab-active" : ""}`} onClick={() => setTab(x.id)}
              data-testid={`instance-tab-${x.id}`}>
              {x.label}
            </button>
          ))}
        </div>
        {tab === "status" || !ctx.canWrite ? (
          <StatusView ctx={ctx} i={i} />
        ) : (
          <Suspense fallback={<p className="muted">{t("common.loading")}</p>}>
            <InstanceConsole ctx={ctx} i={i} />
          </Suspense>
        )}
      </div>
    </Card>
  );
}

function StatusView({ ctx, i }: { ctx: Ctx; i: InstanceResource }) {
  const { t, lang } = useI18n();
  const spec = i.spec;
  const st = i.status;
  const name = (list: { id: string; name: string }[], id: string | null | undefined) =>
    id ? (list.find((x) => x.id === id)?.name ?? id) : "";
  const volumes = spec?.volumes ?? [];
  const rows: [string, ReactNode, string][] = [
    [t("common.phase"), <PhaseBadge phase={st?.phase} testId="instance-detail-phase" />, "phase"],
    [t("instances.desiredState"), spec?.state === "stopped" ? t("instances.stateStopped") : t("instances.stateRunning"), "state"],
    [t("instances.image"), name(ctx.images, spec?.image) || "—", "image"],
    [t("instances.vcpus"), String(spec?.vcpus ?? 1), "vcpus"],
    [t("instances.memory"), formatMib(spec?.memory_mib ?? 256), "memory"],
    [t("instances.subnet"), name(ctx.subnets, spec?.subnet) || "—", "subnet"],
    [t("instances.securityGroups"), (spec?.security_groups ?? []).map((g) => name(ctx.groups, g)).join(", ") || "—", "groups"],
    [t("instances.privateIp"), <Mono>{st?.private_ip || spec?.private_ip}</Mono>, "ip"],
    [t("instances.mac"), <Mono>{st?.mac}</Mono>, "mac"],
    [
      t("instances.volumes"),
      volumes.length
        ? volumes
            .map((v, n) => `vd${String.fromCharCode(98 + n)} ${name(ctx.volumes, v.volume)}${v.read_only ? ` (${t("instances.volumeReadOnly")})` : ""}`)
            .join(", ")
        : "—",
      "volumes",
    ],
    [t("instances.restartPolicy"), t(POLICY_LABEL[spec?.restart_policy ?? "on-failure"]), "policy"],
    [t("instances.stopTimeout"), String(spec?.stop_timeout_seconds ?? 30), "stop-timeout"],
    [t("instances.started"), st?.started_at ? formatTime(st.started_at, lang) : "—", "started"],
    [t("instances.bootTime"), formatBootTime(st?.boot_timer_ms), "boot"],
    [t("instances.restarts"), String(st?.restart_count ?? 0), "restarts"],
    [t("instances.exitReason"), st?.exit_reason ?? "—", "exit"],
    [t("instances.finished"), st?.finished_at ? formatTime(st.finished_at, lang) : "—", "finished"],
  ];
  const conditions = st?.conditions ?? [];
  return (
    <div className="inst-status" data-testid="instance-status">
      {st?.message ? <p className="muted inst-message" data-testid="instance-message">{st.message}</p> : null}
      <dl className="inst-facts">
        {rows.map(([label, value, key]) => (
          <div key={key} className="inst-fact" data-testid={`instance-fact-${key}`}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </div>
        ))}
      </dl>
      <h3 className="subsection-title">{t("instances.conditions")}</h3>
      <table className="table table-compact" data-testid="instance-conditions">
        <thead>
          <tr>
            <th>{t("instances.condType")}</th>
            <th>{t("instances.condStatus")}</th>
            <th>{t("instances.condReason")}</th>
            <th>{t("instances.condMessage")}</th>
            <th>{t("instances.condSince")}</th>
          </tr>
        </thead>
        <tbody>
          {conditions.map((c) => (
            <tr key={c.type} data-testid="instance-condition" data-type={c.type} data-status={c.status}>
              <td className="nowrap">{c.type}</td>
              <td>
                <span className={`badge badge-${c.status === "True" ? "ok" : c.status === "False" ? "bad" : "muted"}`}>
                  {c.status}
                </span>
              </td>
              <td>{c.reason || "—"}</td>
              <td className="ctr-wrap">{c.message || "—"}</td>
              <td className="nowrap">{c.last_transition_time ? formatTime(c.last_transition_time, lang) : "—"}</td>
            </tr>
          ))}
          {conditions.length === 0 ? (
            <tr>
              <td colSpan={5} className="muted empty-cell">{t("instances.noConditions")}</td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </div>
  );
}
