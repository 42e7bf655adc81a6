import { useState, type FormEvent } from "react";
import { api, seg, type List, type OperationResource, type ProjectResource } from "../api";
import { useKindEvents } from "../events";
import { formatTime } from "../format";
import { useI18n } from "../i18n";
import { useSession } from "../session";
import { Card, DeleteButton, ErrorBanner, Notice, PageHeader, PhaseBadge, useLoad } from "../components/ui";
import { ProjectSettings } from "./ProjectSettings";

export function ProjectsPage() {
  const { t, lang } = useI18n();
  const { who } = useSession();
  const canManage = who.site_admin;
  const projects = useLoad(() => api.get<List<ProjectResource>>("/v1/projects"), []);
  useKindEvents(["project", "operation"], projects.reload);

  const [name, setName] = useState("");
  const [description, setDescription] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);

  const create = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const created = await api.post<ProjectResource>("/v1/projects", {
        name: name.trim(),
        spec: { description },
      });
      setNotice(t("projects.created", { name: created?.name ?? name.trim() }));
      setName("");
      setDescription("");
      projects.reload();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const remove = async (project: ProjectResource) => {
    setError(null);
    setNotice(null);
    try {
      const op = await api.del<OperationResource | undefined>(`/v1/projects/${seg(project.name)}`);
      setNotice(t("projects.deleteStarted", { name: project.name, op: op?.id ?? "—" }));
    } catch (err) {
      setError(err);
    }
    projects.reload();
  };

  const items = projects.data?.items ?? [];
  const opened = items.find((p) => p.name === open);

  return (
    <div className="page">
      <PageHeader
        title={t("projects.title")}
        subtitle={t("projects.subtitle")}
        actions={
          <button type="button" className="btn btn-secondary" onClick={projects.reload}>
            {t("common.refresh")}
          </button>
        }
      />
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}

      {canManage ? (
        <Card title={t("projects.create")}>
          <form className="form-row" onSubmit={create} data-testid="project-form">
            <label className="field">
              <span>{t("common.name")}</span>
              <input
                value={name}
                onChange={(e) => setName(e.target.value)}
                required
                placeholder="team-a"
                data-testid="project-name"
              />
            </label>
            <label className="field field-grow">
              <span>{t("projects.description")}</span>
              <input value={description} onChange={(e) => setDescription(e.target.value)} data-testid="project-description" />
            </label>
            <button type="submit" className="btn btn-primary" disabled={busy} data-testid="project-create">
              {busy ? t("common.creating") : t("common.create")}
            </button>
          </form>
        </Card>
      ) : (
        <p className="muted">{t("projects.readOnly")}</p>
      )}

      {opened ? (
        <ProjectSettings
          key={`${opened.id}-${opened.generation}`}
          project={opened}
          canEdit={canManage}
          onSaved={() => {
            setNotice(t("projects.saved", { name: opened.name }));
            projects.reload();
          }}
          onClose={() => setOpen(null)}
        />
      ) : null}

      <Card>
        {projects.error ? <ErrorBanner error={projects.error} /> : null}
        <table className="table" data-testid="projects-table">
          <thead>
            <tr>
              <th>{t("common.name")}</th>
              <th>{t("projects.description")}</th>
              <th>{t("common.phase")}</th>
              <th>{t("common.created")}</th>
              <th className="actions-col">{t("common.actions")}</th>
            </tr>
          </thead>
          <tbody>
            {items.map((p) => (
              <tr key={p.id} data-testid="project-row" data-name={p.name}>
                <td className="name-cell">{p.name}</td>
                <td>{p.spec?.description || <span className="muted">—</span>}</td>
                <td>
                  <PhaseBadge phase={p.status?.phase} />
                </td>
                <td className="nowrap">{formatTime(p.created_at, lang)}</td>
                <td className="actions-col">
                  <button type="button" className="btn btn-secondary" onClick={() => setOpen(p.name)} data-testid={`settings-project-${p.name}`}>
                    {t("projects.settings")}
                  </button>
                  {canManage && p.name !== "system" ? (
                    <DeleteButton onConfirm={() => void remove(p)} disabled={p.status?.phase === "Deleting"} testId={`delete-project-${p.name}`} />
                  ) : null}
                </td>
              </tr>
            ))}
            {items.length === 0 ? (
              <tr>
                <td colSpan={5} className="muted empty-cell">
                  {projects.loading ? t("common.loading") : t("common.empty")}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </Card>
    </div>
  );
}
