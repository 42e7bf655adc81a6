// Containers: the images of a project (pulled from a registry or uploaded as
// an archive) and the containers run from them, with start / stop / restart
// and live logs. Like the networking page, each section is a card with its
// forms, its own error banner and a table; Images.tsx and Containers.tsx hold
// the sections, Logs.tsx the log panel, shared.ts what they share.
import {
  api,
  type ContainerResource,
  type ImageResource,
  type List,
  type NetworkInterfaceResource,
} from "../../api";
import { useKindEvents } from "../../events";
import { useI18n } from "../../i18n";
import { ProjectPicker, useProjectScope } from "../../projectScope";
import { ErrorBanner, PageHeader, useInterval, useLoad } from "../../components/ui";
import { ContainerSection } from "./Containers";
import { ImageSection } from "./Images";
import type { Ctx } from "./shared";

/** A container whose status has not yet caught up with its spec. */
function settling(c: ContainerResource): boolean {
  const phase = c.status?.phase;
  if (!phase || phase === "Pending" || phase === "Restarting") return true;
  return c.spec?.state === "stopped" ? phase === "Running" : phase === "Stopped";
}

export function ContainersPage() {
  const { t } = useI18n();
  const ps = useProjectScope("/containers");
  const { project, scope, canWrite, deps } = ps;

  const images = useLoad(() => api.get<List<ImageResource>>("/v1/images", { query: scope }), deps);
  const containers = useLoad(() => api.get<List<ContainerResource>>("/v1/containers", { query: scope }), deps);
  const interfaces = useLoad(
    () => api.get<List<NetworkInterfaceResource>>("/v1/network-interfaces", { query: scope }),
    deps,
  );
  useKindEvents(["image"], images.reload);
  useKindEvents(["container"], containers.reload);
  useKindEvents(["network_interface"], interfaces.reload);

  const ctx: Ctx = {
    scope,
    canWrite,
    images: images.data?.items ?? [],
    containers: containers.data?.items ?? [],
    interfaces: interfaces.data?.items ?? [],
    loads: { images, containers },
    reload: { images: images.reload, containers: containers.reload },
  };

  // Events bring status changes; polling covers a missed one while something is in flux.
  const pulling = ctx.images.some((i) => i.status?.phase === "Pulling");
  const busy = ctx.containers.some(settling);
  useInterval(() => {
    if (pulling) images.reload();
    if (busy) containers.reload();
  }, 2000);

  const reloadAll = () => {
    images.reload();
    containers.reload();
    interfaces.reload();
  };

  return (
    <div className="page" data-testid="containers-page">
      <PageHeader
        title={t("containers.title")}
        subtitle={t("containers.subtitle")}
        actions={
          <>
            <ProjectPicker scope={ps} label={t("containers.project")} testId="containers-project" />
            <button type="button" className="btn btn-secondary" onClick={reloadAll} data-testid="containers-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={ps.projectsError} />
      {interfaces.error ? <ErrorBanner error={interfaces.error} /> : null}
      {!canWrite ? <p className="muted">{t("containers.readOnly")}</p> : null}

      {/* Keyed by project: switching projects starts every form (and log stream) afresh. */}
      <ImageSection key={`img-${project}`} ctx={ctx} />
      <ContainerSection key={`ctr-${project}`} ctx={ctx} />
    </div>
  );
}
