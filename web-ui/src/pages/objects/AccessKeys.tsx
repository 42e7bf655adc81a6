// Access keys: S3 credentials of the project. Creating one shows its id and
// secret once (the API never returns the secret again); the table lists the
// keys without secrets, and deleting one revokes it.
import { useState, type FormEvent } from "react";
import { api, seg, type AccessKeyResource, type CreatedAccessKey } from "../../api";
import { formatRecent, formatTime } from "../../format";
import { roleLabel, useI18n } from "../../i18n";
import { PhaseBadge } from "../../components/ui";
import { CreateButton, Field, Mono, NameField, ResourceRow, ResourceSection, useMutation } from "../network/shared";
import { KEY_ROLES, type Ctx } from "./shared";

type Role = (typeof KEY_ROLES)[number];

export function AccessKeySection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const m = useMutation();
  const query = { query: ctx.scope };
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("member");
  const [secret, setSecret] = useState<{ name: string; id: string; secret: string } | null>(null);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setSecret(null);
    let made: CreatedAccessKey | undefined;
    const ok = await m.run(async () => {
      made = await api.post<CreatedAccessKey>("/v1/access-keys", { name: name.trim(), spec: { role } }, query);
    }, ctx.reload.keys);
    if (!ok || !made) return;
    setSecret({ name: made.name, id: made.access_key_id ?? made.id, secret: made.secret_access_key });
    setName("");
  };

  const remove = (k: AccessKeyResource) => {
    if (secret?.id === k.id) setSecret(null);
    void m.run(() => api.del(`/v1/access-keys/${seg(k.id)}`, query), ctx.reload.keys);
  };

  return (
    <ResourceSection
      kind="access-key"
      title={t("objects.accessKeys")}
      res={{ m, items: ctx.keys, loaded: ctx.loads.keys }}
      ctx={ctx}
      head={[t("common.name"), t("objects.accessKeyId"), t("objects.role"), t("common.phase"), t("common.created")]}
      note={t("objects.keyNote", { url: ctx.endpoint ?? "—" })}
      form={
        <div className="net-form-stack">
          {secret ? <SecretBox secret={secret} onDismiss={() => setSecret(null)} /> : null}
          <form className="form-row" onSubmit={create} data-testid="access-key-form">
            <NameField value={name} onChange={setName} placeholder="backup-job" testId="access-key-name" />
            <Field label={t("objects.role")}>
              <select value={role} onChange={(e) => setRole(e.target.value as Role)} data-testid="access-key-role">
                {KEY_ROLES.map((r) => (
                  <option key={r} value={r}>
                    {roleLabel(t, r)}
                  </option>
                ))}
              </select>
            </Field>
            <CreateButton busy={m.busy} testId="access-key-create" />
          </form>
        </div>
      }
    >
      {ctx.keys.map((k) => (
        <ResourceRow key={k.id} kind="access-key" item={k} ctx={ctx} busy={m.busy} onDelete={() => remove(k)}>
          <td className="name-cell">{k.name}</td>
          <td data-testid="access-key-id">
            <Mono>{k.id}</Mono>
          </td>
          <td>
            <span className="badge badge-role">{roleLabel(t, k.spec?.role)}</span>
          </td>
          <td>
            <PhaseBadge phase={k.status?.phase} />
          </td>
          <td className="nowrap">
            <span title={formatTime(k.created_at, lang)}>{formatRecent(k.created_at, lang)}</span>
          </td>
        </ResourceRow>
      ))}
    </ResourceSection>
  );
}

/** The new key's id and secret, with copy buttons; shown until dismissed (or another key is made). */
function SecretBox({ secret, onDismiss }: { secret: { name: string; id: string; secret: string }; onDismiss: () => void }) {
  const { t } = useI18n();
  const [copied, setCopied] = useState<"id" | "secret" | null>(null);

  const copy = async (what: "id" | "secret") => {
    try {
      await navigator.clipboard.writeText(what === "id" ? secret.id : secret.secret);
      setCopied(what);
    } catch {
      // the clipboard needs a secure context; select the text instead
      const el = document.querySelector<HTMLElement>(`[data-testid=access-key-${what}-value]`);
      if (el) window.getSelection()?.selectAllChildren(el);
    }
  };

  return (
    <div className="secret-box" data-testid="access-key-secret" role="status">
      <div className="secret-head">
        <strong>{t("objects.secretTitle", { name: secret.name })}</strong>
      </div>
      <span className="muted small">{t("objects.accessKeyId")}</span>
      <div className="secret-row">
        <code className="secret-value" data-testid="access-key-id-value">
          {secret.id}
        </code>
        <button type="button" className="btn btn-secondary btn-small" onClick={() => void copy("id")}>
          {copied === "id" ? t("objects.copied") : t("objects.copy")}
        </button>
      </div>
      <span className="muted small">{t("objects.secretKey")}</span>
      <div className="secret-row">
        <code className="secret-value" data-testid="access-key-secret-value">
          {secret.secret}
        </code>
        <button type="button" className="btn btn-secondary btn-small" onClick={() => void copy("secret")}>
          {copied === "secret" ? t("objects.copied") : t("objects.copy")}
        </button>
      </div>
      <p className="secret-note">⚠ {t("objects.secretNote")}</p>
      <button type="button" className="btn btn-ghost btn-small" onClick={onDismiss} data-testid="access-key-secret-dismiss">
        {t("common.dismiss")}
      </button>
    </div>
  );
}
