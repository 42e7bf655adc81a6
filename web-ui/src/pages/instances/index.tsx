// Instances: the microVMs of a project. A card with the create form and the
// list of instances (start, stop, reboot, delete), then the detail panel of
// the chosen one with its status and conditions and its serial console (live
// over a websocket, or the log). List.tsx and Create.tsx hold the first card,
// Detail.tsx the panel (with Console.tsx), shared.ts what they share.
import { useState } from "react";
import {
  api,
  type ImageResource,
  type List,
  type SecurityGroupResource,
  type SubnetResource,
  type VolumeResource,
} from "../../api";
import { useKindEvents } from "../../events";
import { useI18n } from "../../i18n";
import { ProjectPicker, useProjectScope } from "../../projectScope";
import { Card, ErrorBanner, Notice, PageHeader, useInterval, useLoad } from "../../components/ui";
import { InstanceDetail } from "./Detail";
import { InstanceList } from "./List";
import { isVmImage, type Ctx, type InstanceResource } from "./shared";
import "./instances.css";

/** An instance whose status has not yet caught up with its spec. */
function settling(i: InstanceResource): boolean {
  const phase = i.status?.phase;
  if (!phase || ["Pending", "Stopping", "Restarting"].includes(phase)) return true;
  return i.spec?.state === "stopped" ? phase === "Running" : phase === "Stopped" && !i.status?.exit_reason;
}

export function InstancesPage() {
  const { t } = useI18n();
  const ps = useProjectScope("/instances");
  const { project, scope, canWrite, deps } = ps;
  const [chosen, setChosen] = useState<{ project: string; id: string } | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const instances = useLoad(() => api.get<List<InstanceResource>>("/v1/instances", { query: scope }), deps);
  const images = useLoad(() => api.get<List<ImageResource>>("/v1/images", { query: scope }), deps);
  const subnets = useLoad(() => api.get<List<SubnetResource>>("/v1/subnets", { query: scope }), deps);
  const groups = useLoad(() => api.get<List<SecurityGroupResource>>("/v1/security-groups", { query: scope }), deps);
  const volumes = useLoad(() => api.get<List<VolumeResource>>("/v1/volumes", { query: scope }), deps);
  useKindEvents(["instance"], instances.reload);
  useKindEvents(["image"], images.reload);
  useKindEvents(["subnet"], subnets.reload);
  useKindEvents(["security_group"], groups.reload);
  useKindEvents(["volume"], volumes.reload);

  const items = instances.data?.items ?? [];
  // Events bring status changes; polling covers a missed one while something is in flux.
  useInterval(() => {
    if (items.some(settling)) instances.reload();
  }, 2000);

  const selected = chosen?.project === project ? items.find((i) => i.id === chosen.id) : undefined;
  const ctx: Ctx = {
    scope,
    canWrite,
    instances: items,
    images: (images.data?.items ?? []).filter(isVmImage),
    subnets: subnets.data?.items ?? [],
    groups: groups.data?.items ?? [],
    volumes: volumes.data?.items ?? [],
    loaded: instances,
    reload: instances.reload,
    selected,
    select: (id) => setChosen(id ? { project, id } : null),
    notify: setNotice,
  };
  const reloadAll = () => {
    instances.reload();
    images.reload();
    subnets.reload();
    groups.reload();
    volumes.reload();
  };
  const listError = images.error ?? subnets.error ?? groups.error ?? volumes.error;

  return (
    <div className="page" data-testid="instances-page">
      <PageHeader
        title={t("instances.title")}
        subtitle={t("instances.subtitle")}
        actions={
          <>
            <ProjectPicker scope={ps} label={t("instances.project")} testId="instances-project" />
            <button type="button" className="btn btn-secondary" onClick={reloadAll} data-testid="instances-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={ps.projectsError} />
      {listError ? <ErrorBanner error={listError} /> : null}
      {!canWrite ? <p className="muted">{t("instances.readOnly")}</p> : null}
      {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}

      {/* Keyed by project: switching projects starts the form afresh. */}
      <InstanceList key={`list-${project}`} ctx={ctx} />
      {selected ? (
        // Keyed by instance: another instance opens on its status tab with a new console.
        <InstanceDetail key={`inst-${project}-${selected.id}`} ctx={ctx} i={selected} />
      ) : (
        <Card testId="instance-detail-empty" className="net-card">
          <p className="muted" data-testid="instances-pick">
            {t(items.length ? "instances.pick" : "instances.empty")}
          </p>
        </Card>
      )}
    </div>
  );
}
