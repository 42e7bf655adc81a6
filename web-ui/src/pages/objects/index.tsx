// Object storage: the S3 buckets of a project, a browser for the objects of
// the chosen bucket (folders, upload, download, delete), and the access keys
// S3 clients sign with. Like the storage page, each section is a card with
// its form, its own error banner and a table; Buckets.tsx, Browser.tsx (with
// Upload.tsx and useListing.ts) and AccessKeys.tsx hold the sections,
// shared.ts what they share.
import { useState } from "react";
import { api, type AccessKeyResource, type BucketResource, type List } from "../../api";
import { useKindEvents } from "../../events";
import { useI18n } from "../../i18n";
import { ProjectPicker, useProjectScope } from "../../projectScope";
import { Card, ErrorBanner, PageHeader, useLoad } from "../../components/ui";
import { AccessKeySection } from "./AccessKeys";
import { ObjectBrowser } from "./Browser";
import { BucketSection } from "./Buckets";
import { s3Endpoint, type Ctx } from "./shared";

export function ObjectsPage() {
  const { t } = useI18n();
  const ps = useProjectScope("/objects");
  const { project, scope, canWrite, deps } = ps;
  // The bucket the browser shows, per project (a bucket id belongs to one project).
  const [chosen, setChosen] = useState<{ project: string; id: string } | null>(null);

  const buckets = useLoad(() => api.get<List<BucketResource>>("/v1/buckets", { query: scope }), deps);
  const keys = useLoad(() => api.get<List<AccessKeyResource>>("/v1/access-keys", { query: scope }), deps);
  useKindEvents(["bucket"], buckets.reload);
  useKindEvents(["access_key"], keys.reload);

  const items = buckets.data?.items ?? [];
  const selected = chosen?.project === project ? items.find((b) => b.id === chosen.id) : undefined;

  const site = useLoad(() => api.get<{ s3_port?: number | null }>("/v1/site"), []);
  const endpoint = site.data ? s3Endpoint(site.data.s3_port ?? null) : s3Endpoint(undefined);
  const ctx: Ctx = {
    scope,
    canWrite,
    buckets: items,
    keys: keys.data?.items ?? [],
    loads: { buckets, keys },
    reload: { buckets: buckets.reload, keys: keys.reload },
    selected,
    select: (id) => setChosen(id ? { project, id } : null),
    endpoint,
  };

  const reloadAll = () => {
    buckets.reload();
    keys.reload();
  };

  return (
    <div className="page" data-testid="objects-page">
      <PageHeader
        title={t("objects.title")}
        subtitle={t("objects.subtitle")}
        actions={
          <>
            <ProjectPicker scope={ps} label={t("objects.project")} testId="objects-project" />
            <button type="button" className="btn btn-secondary" onClick={reloadAll} data-testid="objects-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={ps.projectsError} />
      <p className="muted obj-endpoint" data-testid="objects-endpoint">
        <strong>{t("objects.endpoint")}</strong>{" "}
        {endpoint ? (
          <>
            <code className="net-mono">{endpoint}</code> <span className="small">{t("objects.endpointHint", { url: endpoint })}</span>
          </>
        ) : (
          <span className="small">{t("objects.endpointOff")}</span>
        )}
      </p>
      {!canWrite ? <p className="muted">{t("objects.readOnly")}</p> : null}

      {/* Keyed by project: switching projects starts every form afresh. */}
      <BucketSection key={`bkt-${project}`} ctx={ctx} />
      {selected ? (
        // Keyed by bucket: another bucket opens at its root.
        <ObjectBrowser key={`obj-${project}-${selected.id}`} ctx={ctx} bucket={selected} />
      ) : (
        <Card title={t("objects.objects")} testId="object-card" className="net-card">
          <p className="muted" data-testid="object-pick">
            {t(items.length ? "objects.pickBucket" : "objects.noBucket")}
          </p>
        </Card>
      )}
      <AccessKeySection key={`key-${project}`} ctx={ctx} />
    </div>
  );
}
