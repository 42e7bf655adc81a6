// Buckets: the create form (policy, optional quota) and the table with the
// policy changed in place, browse (opens the object browser) and delete.
import { useState, type FormEvent } from "react";
import { api, seg, type BucketPolicy, type BucketResource } from "../../api";
import { formatRecent, formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { CreateButton, Field, NameField, ResourceRow, ResourceSection, useMutation, type Mutation } from "../network/shared";
import { parseQuota, policyLabel, POLICIES, type Ctx } from "./shared";

export function BucketSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const query = { query: ctx.scope };
  const [name, setName] = useState("");
  const [policy, setPolicy] = useState<BucketPolicy>("private");
  const [quota, setQuota] = useState("");

  const create = async (e: FormEvent) => {
    e.preventDefault();
    const spec: { policy: BucketPolicy; quota_mib?: number } = { policy };
    try {
      const mib = parseQuota(quota, t("objects.badQuota", { value: quota.trim() }));
      if (mib !== undefined) spec.quota_mib = mib;
    } catch (err) {
      m.setError(err);
      return;
    }
    let made: BucketResource | undefined;
    const ok = await m.run(async () => {
      made = await api.post<BucketResource>("/v1/buckets", { name: name.trim(), spec }, query);
    }, ctx.reload.buckets);
    if (!ok) return;
    setName("");
    setQuota("");
    setPolicy("private");
    if (made?.id) ctx.select(made.id);
  };

  const setBucketPolicy = (b: BucketResource, next: BucketPolicy) =>
    void m.run(() => api.patch(`/v1/buckets/${seg(b.id)}`, { spec: { policy: next } }, query), ctx.reload.buckets);

  const remove = (b: BucketResource) =>
    void m.run(() => api.del(`/v1/buckets/${seg(b.id)}`, query), ctx.reload.buckets);

  return (
    <ResourceSection
      kind="bucket"
      title={t("objects.buckets")}
      res={{ m, items: ctx.buckets, loaded: ctx.loads.buckets }}
      ctx={ctx}
      head={[t("common.name"), t("objects.policy"), t("objects.quota"), t("common.created")]}
      note={t("objects.bucketNote")}
      form={
        <form className="form-row" onSubmit={create} data-testid="bucket-form">
          <NameField value={name} onChange={setName} placeholder="photos" testId="bucket-name" />
          <Field label={t("objects.policy")}>
            <select value={policy} onChange={(e) => setPolicy(e.target.value as BucketPolicy)} data-testid="bucket-policy">
              {POLICIES.map((p) => (
                <option key={p} value={p}>
                  {policyLabel(t, p)}
                </option>
              ))}
            </select>
          </Field>
          <Field label={t("objects.quotaMib")}>
            <input value={quota} onChange={(e) => setQuota(e.target.value)} inputMode="numeric" size={10}
              placeholder={t("objects.optional")} data-testid="bucket-quota" />
          </Field>
          <CreateButton busy={m.busy} testId="bucket-create" />
        </form>
      }
    >
      {ctx.buckets.map((b) => (
        <BucketRow key={b.id} b={b} ctx={ctx} m={m} onPolicy={(p) => setBucketPolicy(b, p)} onRemove={() => remove(b)} />
      ))}
    </ResourceSection>
  );
}

function BucketRow({ b, ctx, m, onPolicy, onRemove }: {
  b: BucketResource;
  ctx: Ctx;
  m: Mutation;
  onPolicy: (p: BucketPolicy) => void;
  onRemove: () => void;
}) {
  const { t, lang } = useI18n();
  const policy = b.spec?.policy ?? "private";
  const quota = b.spec?.quota_mib;
  const open = ctx.selected?.id === b.id;

  const actions = (
    <button type="button" className="btn btn-secondary btn-small" disabled={open}
      onClick={() => ctx.select(b.id)} data-testid="bucket-browse">
      {t("objects.browse")}
    </button>
  );

  return (
    <ResourceRow kind="bucket" item={b} ctx={ctx} busy={m.busy} onDelete={onRemove} actions={actions}
      className={open ? "net-open" : undefined}>
      <td className="name-cell">
        <button type="button" className="obj-link" onClick={() => ctx.select(b.id)}
          aria-current={open ? "true" : undefined} data-testid="bucket-open">
          {b.name}
        </button>
      </td>
      <td data-testid="bucket-policy-cell" data-policy={policy}>
        {ctx.canWrite ? (
          <span className="net-inline">
            <select value={policy} disabled={m.busy} aria-label={t("objects.policy")}
              onChange={(e) => onPolicy(e.target.value as BucketPolicy)} data-testid="bucket-policy-select">
              {POLICIES.map((p) => (
                <option key={p} value={p}>
                  {policyLabel(t, p)}
                </option>
              ))}
            </select>
          </span>
        ) : (
          <span className={policy === "public-read" ? "badge badge-warn" : "badge badge-muted"}>{policyLabel(t, policy)}</span>
        )}
      </td>
      <td className="nowrap" data-testid="bucket-quota-cell">
        {typeof quota === "number" ? `${quota} MiB` : <span className="muted">{t("objects.quotaNone")}</span>}
      </td>
      <td className="nowrap">
        <span title={formatTime(b.created_at, lang)}>{formatRecent(b.created_at, lang)}</span>
      </td>
    </ResourceRow>
  );
}
