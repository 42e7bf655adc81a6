import { api, ApiError, type List, type NodeResource, type ProbeFeature, type SiteInfo } from "../api";
import { useFeed, useFeedSnapshot, useKindEvents } from "../events";
import { formatAgo, formatBytes, formatClock, formatNumber, formatTime } from "../format";
import { useI18n, type Translate } from "../i18n";
import { Card, ErrorBanner, PageHeader, PhaseBadge, useInterval, useLoad } from "../components/ui";

const REFRESH_MS = 5000;

export function OverviewPage() {
  const { t } = useI18n();
  const nodes = useLoad(() => api.get<List<NodeResource>>("/v1/nodes"), []);
  const site = useLoad(() => api.get<SiteInfo>("/v1/site"), []);

  const refresh = () => {
    nodes.reload();
    site.reload();
  };
  // Heartbeats and phases change without the user doing anything: poll, and
  // refresh at once when the event stream says something changed.
  useInterval(refresh, REFRESH_MS);
  useKindEvents(["node"], nodes.reload);
  useKindEvents(["project", "token", "user"], site.reload, 800);

  const nodesForbidden = nodes.error instanceof ApiError && nodes.error.status === 403;

  return (
    <div className="page">
      <PageHeader
        title={t("overview.title")}
        subtitle={t("overview.subtitle")}
        actions={
          <button type="button" className="btn btn-secondary" onClick={refresh}>
            {t("common.refresh")}
          </button>
        }
      />
      {site.error ? <ErrorBanner error={site.error} /> : null}
      <SiteSummary site={site.data} />
      <div className="overview-grid">
        <div className="overview-main">
          <h2 className="section-title">{t("overview.nodes")}</h2>
          {nodesForbidden ? (
            <Card>
              <p className="muted">{t("overview.nodesForbidden")}</p>
            </Card>
          ) : nodes.error ? (
            <ErrorBanner error={nodes.error} />
          ) : null}
          {!nodes.data && nodes.loading ? <p className="muted">{t("common.loading")}</p> : null}
          {nodes.data && nodes.data.items.length === 0 ? (
            <Card>
              <p className="muted">{t("overview.noNodes")}</p>
            </Card>
          ) : null}
          {nodes.data?.items.map((node) => <NodeCard key={node.id} node={node} />)}
        </div>
        <div className="overview-side">
          <EventsPanel />
        </div>
      </div>
    </div>
  );
}

function SiteSummary({ site }: { site?: SiteInfo }) {
  const { t, lang } = useI18n();
  const counts = Object.entries(site?.counts ?? {}).sort(([a], [b]) => a.localeCompare(b));
  return (
    <div className="summary-row">
      <Card title={t("overview.site")} className="site-card" testId="site-card">
        <dl className="kv">
          <dt>{t("overview.nodeName")}</dt>
          <dd>{site?.node_name ?? "—"}</dd>
          <dt>{t("overview.version")}</dt>
          <dd>{site?.version ?? "—"}</dd>
          <dt>{t("overview.startedAt")}</dt>
          <dd>{site?.started_at ? formatTime(site.started_at, lang) : "—"}</dd>
        </dl>
      </Card>
      <Card title={t("overview.counts")} className="counts-card" testId="counts-card">
        {counts.length === 0 ? (
          <p className="muted">{site ? t("overview.noCounts") : t("common.loading")}</p>
        ) : (
          <div className="stats">
            {counts.map(([kind, n]) => (
              <div className="stat" key={kind} data-testid={`count-${kind}`}>
                <div className="stat-value">{formatNumber(n, lang)}</div>
                <div className="stat-label">{kind}</div>
              </div>
            ))}
          </div>
        )}
      </Card>
    </div>
  );
}

function featureOf(value: ProbeFeature | boolean | string | null | undefined): { available: boolean | null; detail: string } {
  if (typeof value === "boolean") return { available: value, detail: "" };
  if (typeof value === "string") return { available: null, detail: value };
  if (!value || typeof value !== "object") return { available: null, detail: "" };
  const available = typeof value.available === "boolean" ? value.available : null;
  const detail =
    typeof value.detail === "string"
      ? value.detail
      : typeof value.reason === "string"
        ? value.reason
        : typeof value.message === "string"
          ? value.message
          : "";
  return { available, detail };
}

function yesNo(t: Translate, v: boolean | null): string {
  return v === null ? t("common.unknown") : v ? t("common.yes") : t("common.no");
}

function NodeCard({ node }: { node: NodeResource }) {
  const { t, lang } = useI18n();
  const status = node.status ?? {};
  const capacity = status.capacity ?? {};
  const probe = status.probe ?? {};
  const features = Object.entries(probe.features ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const heartbeat = status.heartbeat_at ?? null;
  const schedulable = node.spec?.schedulable;

  return (
    <section className="card node-card" data-testid="node-card" data-node={node.name}>
      <div className="card-header">
        <h2>
          <span className="node-name" data-testid="node-name">{node.name}</span>
          <PhaseBadge phase={status.phase} testId="node-phase" />
        </h2>
        <div className="card-actions node-heartbeat" title={heartbeat ?? ""}>
          <span className="muted">{t("overview.heartbeat")}:</span>{" "}
          <span data-testid="node-heartbeat">
            {heartbeat ? `${formatTime(heartbeat, lang)} (${formatAgo(heartbeat, lang)})` : t("common.never")}
          </span>
        </div>
      </div>
      <div className="card-body">
        <div className="stats capacity">
          <div className="stat">
            <div className="stat-value" data-testid="node-cpus">{formatNumber(capacity.cpus, lang)}</div>
            <div className="stat-label">{t("overview.cpus")}</div>
          </div>
          <div className="stat">
            <div className="stat-value" data-testid="node-memory">{formatBytes(capacity.memory_bytes)}</div>
            <div className="stat-label">{t("overview.memory")}</div>
            {typeof capacity.memory_available_bytes === "number" ? (
              <div className="stat-sub">{t("overview.availableShort", { n: formatBytes(capacity.memory_available_bytes) })}</div>
            ) : null}
          </div>
          <div className="stat">
            <div className="stat-value" data-testid="node-disk">{formatBytes(capacity.disk_free_bytes)}</div>
            <div className="stat-label">{t("overview.diskFree")}</div>
            {typeof capacity.disk_bytes === "number" ? (
              <div className="stat-sub">{t("overview.ofTotal", { n: formatBytes(capacity.disk_bytes) })}</div>
            ) : null}
          </div>
          <div className="stat">
            <div className="stat-value">{schedulable === undefined ? "—" : yesNo(t, schedulable)}</div>
            <div className="stat-label">{t("overview.schedulable")}</div>
          </div>
        </div>

        <h3 className="subsection-title">{t("overview.probe")}</h3>
        <dl className="kv kv-inline">
          <dt>{t("overview.kernel")}</dt>
          <dd data-testid="node-kernel">{probe.kernel ?? "—"}</dd>
          <dt>{t("overview.cgroup")}</dt>
          <dd data-testid="node-cgroup">{probe.cgroup_version ?? "—"}</dd>
          {probe.arch ? (
            <>
              <dt>{t("overview.arch")}</dt>
              <dd>{probe.arch}</dd>
            </>
          ) : null}
          {probe.hostname ? (
            <>
              <dt>{t("overview.hostname")}</dt>
              <dd>{probe.hostname}</dd>
            </>
          ) : null}
          {probe.cpu_model ? (
            <>
              <dt>{t("overview.cpuModel")}</dt>
              <dd className="kv-wide">{probe.cpu_model}</dd>
            </>
          ) : null}
        </dl>
        {features.length === 0 ? (
          <p className="muted">{t("overview.noFeatures")}</p>
        ) : (
          <table className="table table-compact" data-testid="probe-features">
            <thead>
              <tr>
                <th>{t("overview.feature")}</th>
                <th>{t("overview.available")}</th>
                <th>{t("overview.detail")}</th>
              </tr>
            </thead>
            <tbody>
              {features.map(([name, value]) => {
                const f = featureOf(value);
                return (
                  <tr key={name} data-testid="probe-feature">
                    <td>
                      <code>{name}</code>
                    </td>
                    <td className="nowrap">
                      <span className={`dot-label ${f.available === null ? "muted" : f.available ? "ok" : "bad"}`}>
                        {yesNo(t, f.available)}
                      </span>
                    </td>
                    <td className="detail-cell">{f.detail}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </div>
    </section>
  );
}

function EventsPanel() {
  const { t, lang } = useI18n();
  const feed = useFeed();
  const { entries, state } = useFeedSnapshot();
  const stateLabel =
    state === "open" ? t("events.connected") : state === "connecting" ? t("events.connecting") : t("events.disconnected");

  return (
    <Card
      className="events-card"
      testId="events-panel"
      title={
        <>
          {t("events.title")}{" "}
          <span className={`live-dot live-${state}`} data-testid="events-state" data-state={state}>
            {stateLabel}
          </span>
        </>
      }
      actions={
        <button type="button" className="btn btn-ghost btn-small" onClick={() => feed.clear()}>
          {t("events.clear")}
        </button>
      }
    >
      {entries.length === 0 ? (
        <p className="muted events-empty">{t("events.waiting")}</p>
      ) : (
        <table className="table table-compact events-table">
          <thead>
            <tr>
              <th>{t("events.time")}</th>
              <th>{t("events.type")}</th>
              <th>{t("events.kind")}</th>
              <th>{t("events.name")}</th>
              <th>{t("events.message")}</th>
            </tr>
          </thead>
          <tbody>
            {entries.map(({ key, event }) => (
              <tr key={key} data-testid="event-row" data-type={event.type} data-kind={event.kind ?? ""}>
                <td className="nowrap" title={event.time}>
                  {formatClock(event.time, lang)}
                </td>
                <td>
                  <span className={`badge badge-type badge-type-${event.type}`}>{event.type}</span>
                </td>
                <td>{event.kind ?? "—"}</td>
                <td className="name-cell" data-testid="event-name" title={event.resource_id}>
                  <span className="event-name">{event.name ?? "—"}</span>
                  {event.project && event.kind !== "project" ? (
                    <span className="muted small event-project"> {event.project}</span>
                  ) : null}
                </td>
                <td className="message-cell">{event.type === "gap" && !event.message ? t("events.gap") : event.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}
