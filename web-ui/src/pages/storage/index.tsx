// Storage: the block volumes of a project (thin files, grown in place,
// mounted into containers) and their snapshots (point-in-time copies that can
// be restored into new volumes). Like the containers page, each section is a
// card with its form, its own error banner and a table; Volumes.tsx and
// Snapshots.tsx hold the sections, shared.ts what they share.
import { api, type List, type SnapshotResource, type VolumeResource } from "../../api";
import { useKindEvents } from "../../events";
import { useI18n } from "../../i18n";
import { ProjectPicker, useProjectScope } from "../../projectScope";
import { ErrorBanner, PageHeader, useInterval, useLoad } from "../../components/ui";
import { SnapshotSection } from "./Snapshots";
import { VolumeSection } from "./Volumes";
import { snapshotSettling, volumeSettling, type Ctx } from "./shared";

export function StoragePage() {
  const { t } = useI18n();
  const ps = useProjectScope("/storage");
  const { project, scope, canWrite, deps } = ps;

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

  return (
    <div className="page" data-testid="storage-page">
      <PageHeader
        title={t("storage.title")}
        subtitle={t("storage.subtitle")}
        actions={
          <>
            <ProjectPicker scope={ps} label={t("storage.project")} testId="storage-project" />
            <button type="button" className="btn btn-secondary" onClick={reloadAll} data-testid="storage-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={ps.projectsError} />
      {!canWrite ? <p className="muted">{t("storage.readOnly")}</p> : null}

      {/* Keyed by project: switching projects starts every form afresh. */}
      <VolumeSection key={`vol-${project}`} ctx={ctx} />
      <SnapshotSection key={`snap-${project}`} ctx={ctx} />
    </div>
  );
}
