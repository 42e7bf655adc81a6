// Containers: the run form (image, optional network interface, restart
// policy, limits, command, arguments, environment, volume mounts) and the table with start /
// stop / restart, a live log panel per container and delete.
import { useState, type FormEvent } from "react";
import { api, seg, type ContainerResource, type RestartPolicy } from "../../api";
import { formatRecent, formatTime } from "../../format";
import { useI18n, type MessageKey } from "../../i18n";
import { PhaseBadge } from "../../components/ui";
import {
  CreateButton,
  Field,
  Mono,
  NameField,
  ResourceRow,
  ResourceSection,
  columnCount,
  pick,
  useMutation,
} from "../network/shared";
import { ContainerLogs } from "./Logs";
import { RESTART_POLICIES, runSpec, type Ctx } from "./shared";

const POLICY_LABEL: Record<RestartPolicy, MessageKey> = {
  never: "containers.policyNever",
  "on-failure": "containers.policyOnFailure",
  always: "containers.policyAlways",
};

type Action = "start" | "stop" | "restart";

/** Phases in which the container's process is gone. */
const ENDED = ["Stopped", "Exited", "Failed"];

export function ContainerSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const m = useMutation();
  const query = { query: ctx.scope };
  const [name, setName] = useState("");
  const [imageChoice, setImage] = useState("");
  const [eni, setEni] = useState("");
  const [policy, setPolicy] = useState<RestartPolicy>("never");
  const [memory, setMemory] = useState("");
  const [cpus, setCpus] = useState("");
  const [command, setCommand] = useState("");
  const [args, setArgs] = useState("");
  const [env, setEnv] = useState("");
  const [mounts, setMounts] = useState("");
  const [logsOf, setLogsOf] = useState<string | null>(null);

  const ready = ctx.images.filter((i) => i.status?.phase === "Ready");
  const image = pick(imageChoice, ready);
  // An interface serves one container: offer those no other container uses.
  const used = new Set(ctx.containers.map((c) => c.spec?.network_interface).filter((x): x is string => !!x));
  const freeEnis = ctx.interfaces.filter((n) => !used.has(n.id));
  const eniValue = freeEnis.some((n) => n.id === eni) ? eni : "";

  const imageName = (id: string | undefined) => ctx.images.find((i) => i.id === id)?.name ?? id ?? "—";
  const eniName = (id: string | undefined) => ctx.interfaces.find((n) => n.id === id)?.name ?? id ?? "";

  const create = async (e: FormEvent) => {
    e.preventDefault();
    let spec;
    try {
      spec = runSpec({ image, networkInterface: eniValue, restartPolicy: policy, memory, cpus, command, args, env, mounts }, t);
    } catch (err) {
      m.setError(err);
      return;
    }
    if (await m.run(() => api.post("/v1/containers", { name: name.trim(), spec }, query), ctx.reload.containers)) {
      setName("");
      setEni("");
      setMounts("");
    }
  };

  const act = (c: ContainerResource, action: Action) =>
    void m.run(() => api.post(`/v1/containers/${seg(c.id)}/${action}`, undefined, query), ctx.reload.containers);

  const remove = (c: ContainerResource) => {
    if (logsOf === c.id) setLogsOf(null);
    void m.run(() => api.del(`/v1/containers/${seg(c.id)}`, query), ctx.reload.containers);
  };

  const head = [
    t("common.name"),
    t("containers.image"),
    t("common.phase"),
    t("containers.address"),
    t("containers.restartPolicy"),
    t("containers.started"),
  ];
  const cols = columnCount(head, ctx.canWrite);

  return (
    <ResourceSection
      kind="container"
      title={t("containers.containers")}
      res={{ m, items: ctx.containers, loaded: ctx.loads.containers }}
      ctx={ctx}
      head={head}
      note={t("containers.note")}
      form={
        <form className="net-form-stack" onSubmit={create} data-testid="container-form">
          <div className="form-row">
            <NameField value={name} onChange={setName} placeholder="web-1" testId="container-name" />
            <Field label={t("containers.image")}>
              <select value={image} onChange={(e) => setImage(e.target.value)} required data-testid="container-image">
                {ready.length === 0 ? <option value="">{t("containers.noImage")}</option> : null}
                {ready.map((i) => (
                  <option key={i.id} value={i.id}>
                    {i.name}
                  </option>
                ))}
              </select>
            </Field>
            <Field label={t("containers.interface")}>
              <select value={eniValue} onChange={(e) => setEni(e.target.value)} data-testid="container-interface">
                <option value="">{t("containers.noInterface")}</option>
                {freeEnis.map((n) => (
                  <option key={n.id} value={n.id}>
                    {n.spec?.private_ip ? `${n.name} (${n.spec.private_ip})` : n.name}
                  </option>
                ))}
              </select>
            </Field>
            <Field label={t("containers.restartPolicy")}>
              <select value={policy} onChange={(e) => setPolicy(e.target.value as RestartPolicy)} data-testid="container-restart-policy">
                {RESTART_POLICIES.map((p) => (
                  <option key={p} value={p}>
                    {t(POLICY_LABEL[p])}
                  </option>
                ))}
              </select>
            </Field>
            <Field label={t("containers.memory")}>
              <input value={memory} onChange={(e) => setMemory(e.target.value)} inputMode="numeric" size={8}
                placeholder={t("containers.unlimited")} data-testid="container-memory" />
            </Field>
            <Field label={t("containers.cpus")}>
              <input value={cpus} onChange={(e) => setCpus(e.target.value)} inputMode="decimal" size={6}
                placeholder={t("containers.unlimited")} data-testid="container-cpus" />
            </Field>
          </div>
          <div className="form-row ctr-form-row">
            <Field label={t("containers.command")} grow>
              <input value={command} onChange={(e) => setCommand(e.target.value)} placeholder={t("containers.imageDefault")}
                className="net-mono" data-testid="container-command" />
              <span className="muted small ctr-hint">{t("containers.commandHint")}</span>
            </Field>
            <Field label={t("containers.args")} grow>
              <input value={args} onChange={(e) => setArgs(e.target.value)} placeholder={t("containers.imageDefault")}
                className="net-mono" data-testid="container-args" />
              <span className="muted small ctr-hint">{t("containers.argsHint")}</span>
            </Field>
          </div>
          <div className="form-row ctr-form-row">
            <Field label={t("containers.env")} grow>
              <textarea value={env} onChange={(e) => setEnv(e.target.value)} rows={3} spellCheck={false}
                placeholder={"KEY=value\nMODE=production"} className="ctr-textarea" data-testid="container-env" />
              <span className="muted small ctr-hint">{t("containers.envHint")}</span>
            </Field>
            <Field label={t("containers.mounts")} grow>
              <textarea value={mounts} onChange={(e) => setMounts(e.target.value)} rows={3} spellCheck={false}
                placeholder={"data:/data\ncache:/cache:ro"} className="ctr-textarea" data-testid="container-mounts" />
              <span className="muted small ctr-hint">{t("containers.mountsHint")}</span>
            </Field>
            <CreateButton
              busy={m.busy}
              disabled={!image}
              testId="container-create"
              label={t("containers.run")}
              busyLabel={t("containers.starting")}
            />
          </div>
        </form>
      }
    >
      {ctx.containers.flatMap((c) => {
        const open = logsOf === c.id;
        const st = c.status;
        const stopped = c.spec?.state === "stopped";
        const ended = ENDED.includes(st?.phase ?? "");
        const actions = (
          <>
            <button type="button" className="btn btn-ghost btn-small" aria-expanded={open}
              onClick={() => setLogsOf(open ? null : c.id)} data-testid="container-logs-toggle">
              {open ? "▾ " : "▸ "}
              {t("containers.logs")}
            </button>
            {stopped || ended ? (
              <button type="button" className="btn btn-secondary btn-small" disabled={m.busy}
                onClick={() => act(c, "start")} data-testid="container-start">
                {t("containers.start")}
              </button>
            ) : null}
            {!stopped ? (
              <>
                <button type="button" className="btn btn-secondary btn-small" disabled={m.busy}
                  onClick={() => act(c, "restart")} data-testid="container-restart">
                  {t("containers.restart")}
                </button>
                {!ended ? (
                  <button type="button" className="btn btn-secondary btn-small" disabled={m.busy}
                    onClick={() => act(c, "stop")} data-testid="container-stop">
                    {t("containers.stop")}
                  </button>
                ) : null}
              </>
            ) : null}
          </>
        );
        const rows = [
          <ResourceRow key={c.id} kind="container" item={c} ctx={ctx} busy={m.busy} onDelete={() => remove(c)}
            className={open ? "net-open" : undefined} actions={actions}>
            <td className="name-cell">{c.name}</td>
            <td>{imageName(c.spec?.image)}</td>
            <td>
              <PhaseBadge phase={st?.phase} testId="container-phase" />
              {st?.oom_killed ? <span className="badge badge-bad ctr-oom">{t("containers.oomKilled")}</span> : null}
              {ended && typeof st?.exit_code === "number" ? (
                <div className="muted small" data-testid="container-exit">
                  {t("containers.exitCode", { code: st.exit_code })}
                </div>
              ) : null}
              {st?.message ? <div className="muted small ctr-message" data-testid="container-message">{st.message}</div> : null}
            </td>
            <td>
              {c.spec?.network_interface ? (
                <span>
                  <Mono>{st?.private_ip}</Mono> <span className="muted small">{eniName(c.spec.network_interface)}</span>
                </span>
              ) : (
                <span className="muted">{t("containers.loopback")}</span>
              )}
            </td>
            <td className="nowrap">
              {t(POLICY_LABEL[c.spec?.restart_policy ?? "never"])}
              {st?.restart_count ? <span className="muted small"> · {t("containers.restarts", { n: st.restart_count })}</span> : null}
            </td>
            <td className="nowrap">
              {st?.started_at && !ended ? (
                <span title={formatTime(st.started_at, lang)}>{formatRecent(st.started_at, lang)}</span>
              ) : (
                <span className="muted">—</span>
              )}
            </td>
          </ResourceRow>,
        ];
        if (open) {
          rows.push(
            <tr key={`${c.id}-logs`} className="net-subrow">
              <td colSpan={cols}>
                <ContainerLogs container={c} scope={ctx.scope} onClose={() => setLogsOf(null)} />
              </td>
            </tr>,
          );
        }
        return rows;
      })}
    </ResourceSection>
  );
}
