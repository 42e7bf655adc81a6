// Volumes: the create form (a size, or a clone of a Ready snapshot) and the
// table with grow (inline), snapshot and delete per volume.
import { useState, type FormEvent } from "react";
import { api, seg, type VolumeResource } from "../../api";
import { formatRecent, formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { Notice, PhaseBadge } from "../../components/ui";
import { CreateButton, Field, NameField, ResourceRow, ResourceSection, useMutation, type Mutation } from "../network/shared";
import { growsOnNextAttach, mibOf, MIB, parseMib, snapshotName, type Ctx } from "./shared";

export function VolumeSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const query = { query: ctx.scope };
  const [name, setName] = useState("");
  const [size, setSize] = useState("");
  const [sourceChoice, setSource] = useState("");
  // The last snapshot taken from a row, shown until the next change.
  const [notice, setNotice] = useState<{ name: string; volume: string } | null>(null);

  const ready = ctx.snapshots.filter((s) => s.status?.phase === "Ready");
  const source = ready.some((s) => s.id === sourceChoice) ? sourceChoice : "";

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setNotice(null);
    const spec: { size_mib?: number; source_snapshot?: string } = {};
    try {
      if (size.trim() || !source) spec.size_mib = parseMib(size, t("storage.badSize", { value: size.trim() }));
    } catch (err) {
      m.setError(err);
      return;
    }
    if (source) spec.source_snapshot = source;
    if (await m.run(() => api.post("/v1/volumes", { name: name.trim(), spec }, query), ctx.reload.volumes)) {
      setName("");
      setSize("");
      setSource("");
    }
  };

  const grow = (v: VolumeResource, mib: number) =>
    m.run(() => api.patch(`/v1/volumes/${seg(v.id)}`, { spec: { size_mib: mib } }, query), ctx.reload.volumes);

  const snapshot = async (v: VolumeResource) => {
    setNotice(null);
    const snap = snapshotName(v.name);
    if (await m.run(() => api.post("/v1/snapshots", { name: snap, spec: { volume: v.id } }, query), ctx.reload.snapshots)) {
      setNotice({ name: snap, volume: v.name });
    }
  };

  const remove = (v: VolumeResource) => {
    setNotice(null);
    void m.run(() => api.del(`/v1/volumes/${seg(v.id)}`, query), ctx.reload.volumes);
  };

  return (
    <ResourceSection
      kind="volume"
      title={t("storage.volumes")}
      res={{ m, items: ctx.volumes, loaded: ctx.loads.volumes }}
      ctx={ctx}
      head={[
        t("common.name"),
        t("common.phase"),
        t("storage.sizeMib"),
        t("storage.usedMib"),
        t("storage.attachedTo"),
        t("common.created"),
      ]}
      note={t("storage.volumeNote")}
      form={
        <div className="net-form-stack">
          {notice ? <Notice onDismiss={() => setNotice(null)}>{t("storage.snapshotTaken", notice)}</Notice> : null}
          <form className="form-row" onSubmit={create} data-testid="volume-form">
            <NameField value={name} onChange={setName} placeholder="data" testId="volume-name" />
            <Field label={t("storage.sizeMib")}>
              <input value={size} onChange={(e) => setSize(e.target.value)} inputMode="numeric" size={10}
                required={!source} placeholder={source ? t("storage.snapshotSize") : "64"} data-testid="volume-size" />
            </Field>
            <Field label={t("storage.cloneFrom")}>
              <select value={source} onChange={(e) => setSource(e.target.value)} data-testid="volume-source">
                <option value="">{t("storage.emptyVolume")}</option>
                {ready.map((s) => (
                  <option key={s.id} value={s.id}>
                    {s.status?.size_mib ? `${s.name} (${s.status.size_mib} MiB)` : s.name}
                  </option>
                ))}
              </select>
            </Field>
            <CreateButton busy={m.busy} testId="volume-create" />
          </form>
        </div>
      }
    >
      {ctx.volumes.map((v) => (
        <VolumeRow key={v.id} v={v} ctx={ctx} m={m} onGrow={grow} onSnapshot={() => void snapshot(v)} onRemove={() => remove(v)} />
      ))}
    </ResourceSection>
  );
}

function VolumeRow({ v, ctx, m, onGrow, onSnapshot, onRemove }: {
  v: VolumeResource;
  ctx: Ctx;
  m: Mutation;
  onGrow: (v: VolumeResource, mib: number) => Promise<boolean>;
  onSnapshot: () => void;
  onRemove: () => void;
}) {
  const { t, lang } = useI18n();
  const [to, setTo] = useState("");
  const st = v.status;
  const size = v.spec?.size_mib;
  const provisioned = st?.provisioned_bytes;
  const growing = typeof size === "number" && typeof provisioned === "number" && provisioned < size * MIB;
  const resizeHint = growsOnNextAttach(v);
  const used = mibOf(st?.allocated_bytes);
  const attached = st?.attached_to ?? [];
  const made = !!st?.phase && st.phase !== "Creating";

  const grow = async (e: FormEvent) => {
    e.preventDefault();
    let mib: number;
    try {
      mib = parseMib(to, t("storage.badSize", { value: to.trim() }));
    } catch (err) {
      m.setError(err);
      return;
    }
    if (await onGrow(v, mib)) setTo("");
  };

  const actions = (
    <>
      <form className="net-inline" onSubmit={grow}>
        <input value={to} onChange={(e) => setTo(e.target.value)} inputMode="numeric" size={6}
          placeholder={size ? String(size) : "MiB"} aria-label={t("storage.growTo")} className="sto-grow-input"
          data-testid="volume-grow-size" />
        <button type="submit" className="btn btn-secondary btn-small" disabled={m.busy || !to.trim()} data-testid="volume-grow">
          {t("storage.grow")}
        </button>
      </form>
      <button type="button" className="btn btn-secondary btn-small" disabled={m.busy || !made}
        onClick={onSnapshot} data-testid="volume-snapshot">
        {t("storage.snapshot")}
      </button>
    </>
  );

  return (
    <ResourceRow kind="volume" item={v} ctx={ctx} busy={m.busy} onDelete={onRemove} actions={actions}>
      <td className="name-cell">
        {v.name}
        {v.spec?.source_snapshot ? (
          <div className="muted small" data-testid="volume-source-snapshot">
            {t("storage.clonedFrom", { name: ctx.snapshots.find((s) => s.id === v.spec?.source_snapshot)?.name ?? v.spec.source_snapshot })}
          </div>
        ) : null}
      </td>
      <td>
        <PhaseBadge phase={st?.phase} testId="volume-phase" />
        {st?.mounted ? <div className="muted small">{t("storage.mounted")}</div> : null}
      </td>
      <td className="nowrap">
        <span data-testid="volume-mib">{typeof size === "number" ? size : "—"}</span>
        {growing ? <span className="muted small"> · {t("storage.growing")}</span> : null}
        {resizeHint !== null ? (
          <div className="muted small sto-hint" title={resizeHint || undefined} data-testid="volume-resize-hint">
            {t("storage.resizeOnAttach")}
          </div>
        ) : null}
      </td>
      <td className="nowrap" data-testid="volume-used">
        {used ?? <span className="muted">—</span>}
      </td>
      <td data-testid="volume-attached">
        {attached.length ? attached.join(", ") : <span className="muted">—</span>}
      </td>
      <td className="nowrap">
        <span title={formatTime(v.created_at, lang)}>{formatRecent(v.created_at, lang)}</span>
      </td>
    </ResourceRow>
  );
}
