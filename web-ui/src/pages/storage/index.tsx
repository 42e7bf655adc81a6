// Storage: the block volumes of a project (thin files, grown in place,
// mounted into containers) and their snapshots (point-in-time copies that can
// be restored into new volumes). Like the containers page, each section is a
// card with its form, its own error banner and a table; Volumes.tsx and
// Snapshots.tsx hold the sections, shared.ts what they share.
import { useState } from "react";
import { api, type List, type ProjectResource, type SnapshotResource, type VolumeResource } from "../../api";
import { useKindEvents } from "../../events";
import { useI18n } from "../../i18n";
import { navigate } from "../../router";
import { useSession } from "../../session";
import { ErrorBanner, PageHeader, useInterval, useLoad } from "../../components/ui";
import { SnapshotSection } from "./Snapshots";
import { VolumeSection } from "./Volumes";
import { snapshotSettling, volumeSettling, type Ctx, type Scope } from "./shared";

function projectFromUrl(): string | null {
  return new URLSearchParams(window.location.search).get("project");
}

export function StoragePage() {
  const { t } = useI18n();
  const { who } = useSession();
  const siteAdmin = who.site_admin;
  const canWrite = siteAdmin || who.role === "admin" || who.role === "member";

  // Site admins pick the project (kept in ?project= so a reload stays there).
  const [project, setProjectState] = useState(() => (siteAdmin ? projectFromUrl() : null) ?? who.project);
  const setProject = (next: string) => {
    setProjectState(next);
    navigate(next === who.project ? "/storage" : `/storage?project=${encodeURIComponent(next)}`, { replace: true });
  };
  const scope: Scope = siteAdmin ? { project } : undefined;
  const deps = [project, siteAdmin];

  const projects = useLoad(
    () => (siteAdmin ? api.get<List<ProjectResource>>("/v1/projects") : Promise.resolve({ items: [] })),
    [siteAdmin],
  );
  const volumes = useLoad(() => api.get<List<VolumeResource>>("/v1/volumes", { query: scope }), deps);
  const snapshots = useLoad(() => api.get<List<SnapshotResource>>("/v1/snapshots", { query: scope }), deps);
  // A container that mounts a volume changes its phase and attachments.
  useKindEvents(["volume", "container"], volumes.reload);
  useKindEvents(["snapshot"], snapshots.reload);

  const ctx: Ctx = {
    scope,
    canWrite,
    volumes: volumes.data?.items ?? [],
    snapshots: snapshots.data?.items ?? [],
    loads: { volumes, snapshots },
    reload: { volumes: volumes.reload, snapshots: snapshots.reload },
  };

  // Events bring status changes; polling covers a missed one while something is in flux.
  const volumesBusy = ctx.volumes.some(volumeSettling);
  const snapshotsBusy = ctx.snapshots.some(snapshotSettling);
  useInterval(() => {
    if (volumesBusy) volumes.reload();
    if (snapshotsBusy) snapshots.reload();
  }, 2000);

  const reloadAll = () => {
    volumes.reload();
    snapshots.reload();
  };

  const projectNames = Array.from(new Set([who.project, project, ...(projects.data?.items ?? []).map((p) => p.name)])).sort();

  return (
    <div className="page" data-testid="storage-page">
      <PageHeader
        title={t("storage.title")}
        subtitle={t("storage.subtitle")}
        actions={
          <>
            {siteAdmin ? (
              <label className="inline-field">
                <span>{t("storage.project")}</span>
                <select value={project} onChange={(e) => setProject(e.target.value)} data-testid="storage-project">
                  {projectNames.map((p) => (
                    <option key={p} value={p}>
                      {p}
                    </option>
                  ))}
                </select>
              </label>
            ) : null}
            <button type="button" className="btn btn-secondary" onClick={reloadAll} data-testid="storage-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      {projects.error ? <ErrorBanner error={projects.error} /> : null}
      {!canWrite ? <p className="muted">{t("storage.readOnly")}</p> : null}

      {/* Keyed by project: switching projects starts every form afresh. */}
      <VolumeSection key={`vol-${project}`} ctx={ctx} />
      <SnapshotSection key={`snap-${project}`} ctx={ctx} />
    </div>
  );
}
