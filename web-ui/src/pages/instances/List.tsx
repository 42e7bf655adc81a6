// The first card of the Instances page: the create form (writers only) and the
// table of the project's instances with start / stop / reboot / delete; a
// row's name or Open button opens the detail panel.
import { api } from "../../api";
import { formatRecent, formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { Card, DeleteButton, ErrorBanner, PhaseBadge } from "../../components/ui";
import { Mono, useMutation } from "../network/shared";
import { CreateForm } from "./Create";
import { ENDED, formatBootTime, formatMib, instPath, type Ctx, type InstanceResource } from "./shared";

type Action = "start" | "stop" | "reboot";

export function InstanceList({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const { instances, loaded } = ctx;
  const head = [
    t("common.name"),
    t("common.phase"),
    t("instances.vcpus"),
    t("instances.memoryShort"),
    t("instances.privateIp"),
    t("instances.image"),
    t("instances.booted"),
    t("common.actions"),
  ];

  const act = (i: InstanceResource, action: Action) =>
    void m.run(() => api.post(instPath(i, `/${action}`), undefined, { query: ctx.scope }), ctx.reload);

  const remove = async (i: InstanceResource) => {
    const ok = await m.run(() => api.del(instPath(i), { query: ctx.scope }), ctx.reload);
    if (!ok) return;
    if (ctx.selected?.id === i.id) ctx.select(null);
    ctx.notify(t("instances.deleted", { name: i.name }));
  };

  return (
    <Card
      title={
        <>
          {t("instances.list")} <span className="badge badge-muted net-count">{instances.length}</span>
        </>
      }
      testId="instances-card"
      className="net-card"
    >
      {loaded.error ? <ErrorBanner error={loaded.error} /> : null}
      {ctx.canWrite ? <CreateForm ctx={ctx} /> : null}
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      <div className="net-table">
        <table className="table" data-testid="instances-table">
          <thead>
            <tr>
              {head.map((h, i) => (
                <th key={i} className={i === head.length - 1 ? "actions-col" : undefined}>
                  {h}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {instances.map((i) => (
              <InstanceRow key={i.id} i={i} ctx={ctx} busy={m.busy} act={act} remove={remove} />
            ))}
            {instances.length === 0 ? (
              <tr>
                <td colSpan={head.length} className="muted empty-cell">
                  {loaded.loading ? t("common.loading") : t("instances.empty")}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

function InstanceRow({ i, ctx, busy, act, remove }: {
  i: InstanceResource;
  ctx: Ctx;
  busy: boolean;
  act: (i: InstanceResource, action: Action) => void;
  remove: (i: InstanceResource) => Promise<void>;
}) {
  const { t, lang } = useI18n();
  const open = ctx.selected?.id === i.id;
  const spec = i.spec;
  const st = i.status;
  const stopped = spec?.state === "stopped";
  const ended = ENDED.includes(st?.phase ?? "");
  const image = ctx.images.find((x) => x.id === spec?.image)?.name ?? spec?.image;
  const running = st?.phase === "Running";
  return (
    <tr data-testid="instance-row" data-name={i.name} data-id={i.id} data-phase={st?.phase ?? ""}
      className={open ? "net-open" : undefined}>
      <td className="name-cell">
        <button type="button" className="obj-link" onClick={() => ctx.select(i.id)}
          aria-current={open ? "true" : undefined} data-testid="instance-name">
          {i.name}
        </button>
      </td>
      <td>
        <PhaseBadge phase={st?.phase} testId="instance-phase" />
        {stopped && !ended ? <span className="muted small"> → {t("instances.stateStopped")}</span> : null}
        {st?.message ? <div className="muted small ctr-message">{st.message}</div> : null}
      </td>
      <td className="nowrap" data-testid="instance-vcpus-cell">{spec?.vcpus ?? 1}</td>
      <td className="nowrap" data-testid="instance-memory-cell">{formatMib(spec?.memory_mib ?? 256)}</td>
      <td data-testid="instance-ip-cell">
        <Mono>{st?.private_ip || spec?.private_ip}</Mono>
      </td>
      <td data-testid="instance-image-cell">{image ?? "—"}</td>
      <td className="nowrap" data-testid="instance-boot-cell">
        {st?.started_at && !ended ? (
          <span title={formatTime(st.started_at, lang)}>{formatRecent(st.started_at, lang)}</span>
        ) : (
          <span className="muted">—</span>
        )}
        {typeof st?.boot_timer_ms === "number" ? (
          <div className="muted small">{t("instances.bootTimer", { time: formatBootTime(st.boot_timer_ms) })}</div>
        ) : null}
      </td>
      <td className="actions-col">
        <span className="row-actions">
          <button type="button" className="btn btn-secondary btn-small" disabled={open}
            onClick={() => ctx.select(i.id)} data-testid="instance-open">
            {t("instances.open")}
          </button>
          {ctx.canWrite ? (
            <>
              {stopped || ended ? (
                <button type="button" className="btn btn-secondary btn-small" disabled={busy}
                  onClick={() => act(i, "start")} data-testid="instance-start">
                  {t("instances.start")}
                </button>
              ) : null}
              {!stopped && !ended ? (
                <button type="button" className="btn btn-secondary btn-small" disabled={busy}
                  onClick={() => act(i, "stop")} data-testid="instance-stop">
                  {t("instances.stop")}
                </button>
              ) : null}
              {running && !stopped ? (
                <button type="button" className="btn btn-secondary btn-small" disabled={busy}
                  onClick={() => act(i, "reboot")} data-testid="instance-reboot">
                  {t("instances.reboot")}
                </button>
              ) : null}
            </>
          ) : null}
        </span>
        {ctx.canWrite ? (
          <DeleteButton onConfirm={() => void remove(i)} disabled={busy} testId={`delete-instance-${i.name}`} />
        ) : null}
      </td>
    </tr>
  );
}
