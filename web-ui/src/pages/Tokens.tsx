import { useState, type FormEvent } from "react";
import { api, seg, type CreatedToken, type List, type ProjectResource, type TokenResource } from "../api";
import { useKindEvents } from "../events";
import { formatTime } from "../format";
import { roleLabel, useI18n } from "../i18n";
import { useSession } from "../session";
import { Card, DeleteButton, ErrorBanner, Notice, PageHeader, PhaseBadge, useLoad } from "../components/ui";

const ROLES = ["admin", "member", "viewer"] as const;

export function TokensPage() {
  const { t, lang } = useI18n();
  const { who, isProjectAdmin } = useSession();
  const siteAdmin = who.site_admin;

  // Site admins pick the project; everyone else works in their own.
  const [project, setProject] = useState(who.project);
  const scope = siteAdmin ? { project } : undefined;

  const projects = useLoad(
    () => (siteAdmin ? api.get<List<ProjectResource>>("/v1/projects") : Promise.resolve({ items: [] })),
    [siteAdmin],
  );
  const tokens = useLoad(() => api.get<List<TokenResource>>("/v1/tokens", { query: scope }), [project, siteAdmin]);
  useKindEvents(["token"], tokens.reload);

  const [name, setName] = useState("");
  const [role, setRole] = useState<(typeof ROLES)[number]>("member");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [secret, setSecret] = useState<{ name: string; project: string; secret: string } | null>(null);
  const [copied, setCopied] = useState(false);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    setSecret(null);
    setCopied(false);
    try {
      const created = await api.post<CreatedToken>("/v1/tokens", { name: name.trim(), spec: { role } }, { query: scope });
      setSecret({ name: created.name ?? name.trim(), project: created.project ?? project, secret: created.secret });
      setName("");
      tokens.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const remove = async (token: TokenResource) => {
    setError(null);
    setNotice(null);
    try {
      await api.del<unknown>(`/v1/tokens/${seg(token.name)}`, { query: scope });
      setNotice(t("tokens.deleted", { name: token.name }));
    } catch (err) {
      setError(err);
    }
    tokens.reload();
  };

  const copy = async () => {
    if (!secret) return;
    try {
      await navigator.clipboard.writeText(secret.secret);
      setCopied(true);
    } catch {
      // clipboard needs a secure context; the secret stays selectable
      const el = document.querySelector<HTMLElement>("[data-testid=token-secret-value]");
      if (el) window.getSelection()?.selectAllChildren(el);
    }
  };

  const projectNames = Array.from(new Set([who.project, ...(projects.data?.items ?? []).map((p) => p.name)])).sort();
  const items = tokens.data?.items ?? [];

  return (
    <div className="page">
      <PageHeader
        title={t("tokens.title")}
        subtitle={t("tokens.subtitle")}
        actions={
          <>
            {siteAdmin ? (
              <label className="inline-field">
                <span>{t("tokens.project")}</span>
                <select value={project} onChange={(e) => { setProject(e.target.value); setSecret(null); }} data-testid="token-project">
                  {projectNames.map((p) => (
                    <option key={p} value={p}>
                      {p}
                    </option>
                  ))}
                </select>
              </label>
            ) : null}
            <button type="button" className="btn btn-secondary" onClick={tokens.reload}>
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      {projects.error ? <ErrorBanner error={projects.error} /> : null}
      {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}

      {secret ? (
        <div className="secret-box" data-testid="token-secret" role="status">
          <div className="secret-head">
            <strong>{t("tokens.secretTitle", { name: secret.name })}</strong>
            <span className="muted small">
              {t("tokens.project")}: {secret.project}
            </span>
          </div>
          <div className="secret-row">
            <code className="secret-value" data-testid="token-secret-value">
              {secret.secret}
            </code>
            <button type="button" className="btn btn-secondary btn-small" onClick={() => void copy()}>
              {copied ? t("tokens.copied") : t("tokens.copy")}
            </button>
          </div>
          <p className="secret-note">⚠ {t("tokens.secretNote")}</p>
          <button type="button" className="btn btn-ghost btn-small" onClick={() => setSecret(null)}>
            {t("common.dismiss")}
          </button>
        </div>
      ) : null}

      {isProjectAdmin ? (
        <Card title={t("tokens.create")}>
          <form className="form-row" onSubmit={create} data-testid="token-form">
            <label className="field field-grow">
              <span>{t("common.name")}</span>
              <input
                value={name}
                onChange={(e) => setName(e.target.value)}
                required
                placeholder="ci-deploy"
                data-testid="token-name"
              />
            </label>
            <label className="field">
              <span>{t("tokens.role")}</span>
              <select value={role} onChange={(e) => setRole(e.target.value as (typeof ROLES)[number])} data-testid="token-role">
                {ROLES.map((r) => (
                  <option key={r} value={r}>
                    {roleLabel(t, r)}
                  </option>
                ))}
              </select>
            </label>
            <button type="submit" className="btn btn-primary" disabled={busy} data-testid="token-create">
              {busy ? t("common.creating") : t("common.create")}
            </button>
          </form>
        </Card>
      ) : (
        <p className="muted">{t("tokens.readOnly")}</p>
      )}

      <Card>
        {tokens.error ? <ErrorBanner error={tokens.error} /> : null}
        <table className="table" data-testid="tokens-table">
          <thead>
            <tr>
              <th>{t("common.name")}</th>
              <th>{t("tokens.role")}</th>
              <th>{t("common.created")}</th>
              <th>{t("tokens.expires")}</th>
              <th>{t("common.phase")}</th>
              {isProjectAdmin ? <th className="actions-col">{t("common.actions")}</th> : null}
            </tr>
          </thead>
          <tbody>
            {items.map((tok) => (
              <tr key={tok.id} data-testid="token-row" data-name={tok.name}>
                <td className="name-cell">{tok.name}</td>
                <td>
                  <span className="badge badge-role">{roleLabel(t, tok.spec?.role)}</span>
                </td>
                <td className="nowrap">{formatTime(tok.created_at, lang)}</td>
                <td className="nowrap">{tok.spec?.expires_at ? formatTime(tok.spec.expires_at, lang) : t("common.never")}</td>
                <td>
                  <PhaseBadge phase={tok.status?.phase} />
                </td>
                {isProjectAdmin ? (
                  <td className="actions-col">
                    <DeleteButton onConfirm={() => void remove(tok)} testId={`delete-token-${tok.name}`} />
                  </td>
                ) : null}
              </tr>
            ))}
            {items.length === 0 ? (
              <tr>
                <td colSpan={isProjectAdmin ? 6 : 5} className="muted empty-cell">
                  {tokens.loading ? t("common.loading") : t("common.empty")}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Card>
    </div>
  );
}
