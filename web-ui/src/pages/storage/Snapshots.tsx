// Snapshots: taken from the Volumes table (or the form here), listed with the
// volume they copy, and restored into a new volume (a clone) or deleted.
import { useState, type FormEvent } from "react";
import { api, seg, type SnapshotResource } from "../../api";
import { formatRecent, formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { PhaseBadge } from "../../components/ui";
import { CreateButton, Field, NameField, ResourceRow, ResourceSection, pick, useMutation, type Mutation } from "../network/shared";
import { mibOf, type Ctx } from "./shared";

export function SnapshotSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const query = { query: ctx.scope };
  const [name, setName] = useState("");
  const [volumeChoice, setVolume] = useState("");
  const volume = pick(volumeChoice, ctx.volumes);

  const volumeName = (id: string | undefined) => ctx.volumes.find((v) => v.id === id)?.name;

  const create = async (e: FormEvent) => {
    e.preventDefault();
    if (await m.run(() => api.post("/v1/snapshots", { name: name.trim(), spec: { volume } }, query), ctx.reload.snapshots)) {
      setName("");
    }
  };

  const restore = (s: SnapshotResource, to: string) =>
    m.run(
      () => api.post("/v1/volumes", { name: to, spec: { source_snapshot: s.id } }, query),
      () => {
        ctx.reload.volumes();
        ctx.reload.snapshots();
      },
    );

  const remove = (s: SnapshotResource) => void m.run(() => api.del(`/v1/snapshots/${seg(s.id)}`, query), ctx.reload.snapshots);

  return (
    <ResourceSection
      kind="snapshot"
      title={t("storage.snapshots")}
      res={{ m, items: ctx.snapshots, loaded: ctx.loads.snapshots }}
      ctx={ctx}
      head={[
        t("common.name"),
        t("common.phase"),
        t("storage.volume"),
        t("storage.sizeMib"),
        t("storage.copy"),
        t("storage.takenAt"),
      ]}
      note={t("storage.snapshotNote")}
      form={
        <form className="form-row" onSubmit={create} data-testid="snapshot-form">
          <NameField value={name} onChange={setName} placeholder="data-before-upgrade" testId="snapshot-name" />
          <Field label={t("storage.volume")}>
            <select value={volume} onChange={(e) => setVolume(e.target.value)} required data-testid="snapshot-volume-select">
              {ctx.volumes.length === 0 ? <option value="">{t("storage.noVolume")}</option> : null}
              {ctx.volumes.map((v) => (
                <option key={v.id} value={v.id}>
                  {v.name}
                </option>
              ))}
            </select>
          </Field>
          <CreateButton busy={m.busy} disabled={!volume} testId="snapshot-create"
            label={t("storage.takeSnapshot")} busyLabel={t("storage.taking")} />
        </form>
      }
    >
      {ctx.snapshots.map((s) => (
        <SnapshotRow key={s.id} s={s} ctx={ctx} m={m} volumeName={volumeName(s.spec?.volume)}
          onRestore={restore} onRemove={() => remove(s)} />
      ))}
    </ResourceSection>
  );
}

function SnapshotRow({ s, ctx, m, volumeName, onRestore, onRemove }: {
  s: SnapshotResource;
  ctx: Ctx;
  m: Mutation;
  volumeName: string | undefined;
  onRestore: (s: SnapshotResource, to: string) => Promise<boolean>;
  onRemove: () => void;
}) {
  const { t, lang } = useI18n();
  // The name of the new volume while the restore form is open, else null.
  const [to, setTo] = useState<string | null>(null);
  const st = s.status;
  const ready = st?.phase === "Ready";

  const restore = async (e: FormEvent) => {
    e.preventDefault();
    if (to !== null && (await onRestore(s, to.trim()))) setTo(null);
  };

  const actions =
    to === null ? (
      <button type="button" className="btn btn-secondary btn-small" disabled={m.busy || !ready}
        onClick={() => setTo("")} data-testid="snapshot-restore">
        {t("storage.restore")}
      </button>
    ) : (
      <form className="net-inline" onSubmit={restore}>
        <input value={to} onChange={(e) => setTo(e.target.value)} required autoFocus size={12}
          placeholder={t("storage.newVolumeName")} aria-label={t("storage.newVolumeName")} className="sto-restore-input"
          data-testid="snapshot-restore-name" />
        <button type="submit" className="btn btn-primary btn-small" disabled={m.busy || !to.trim()} data-testid="snapshot-restore-confirm">
          {t("storage.restoreConfirm")}
        </button>
        <button type="button" className="btn btn-ghost btn-small" onClick={() => setTo(null)} data-testid="snapshot-restore-cancel">
          {t("common.cancel")}
        </button>
      </form>
    );

  return (
    <ResourceRow kind="snapshot" item={s} ctx={ctx} busy={m.busy} onDelete={onRemove} actions={actions}>
      <td className="name-cell">{s.name}</td>
      <td>
        <PhaseBadge phase={st?.phase} testId="snapshot-phase" />
        {st?.message ? <div className="muted small ctr-message">{st.message}</div> : null}
      </td>
      <td data-testid="snapshot-volume">
        {volumeName ?? (
          <span className="muted" title={s.spec?.volume}>
            {t("storage.volumeGone")}
          </span>
        )}
      </td>
      <td className="nowrap">
        <span data-testid="snapshot-mib">{typeof st?.size_mib === "number" ? st.size_mib : "—"}</span>
        {st?.allocated_bytes !== undefined ? (
          <span className="muted small"> · {t("storage.usedShort", { mib: mibOf(st.allocated_bytes) ?? "—" })}</span>
        ) : null}
      </td>
      <td className="nowrap" data-testid="snapshot-copy">
        {st?.copy ? <span title={t(st.copy === "reflink" ? "storage.reflinkHint" : "storage.sparseHint")}>{st.copy}</span> : <span className="muted">—</span>}
      </td>
      <td className="nowrap">
        {st?.taken_at ? (
          <span title={formatTime(st.taken_at, lang)}>{formatRecent(st.taken_at, lang)}</span>
        ) : (
          <span className="muted">—</span>
        )}
      </td>
    </ResourceRow>
  );
}
