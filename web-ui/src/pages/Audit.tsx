import { useState } from "react";
import { api, type AuditRecord, type List } from "../api";
import { formatTime } from "../format";
import { useI18n } from "../i18n";
import { Card, ErrorBanner, PageHeader, useLoad } from "../components/ui";

const PAGE = 200;

function statusTone(status: unknown): string {
  if (typeof status !== "number") return "muted";
  if (status >= 500) return "bad";
  if (status >= 400) return "warn";
  return "ok";
}

export function AuditPage() {
  const { t, lang } = useI18n();
  const first = useLoad(() => api.get<List<AuditRecord>>("/v1/audit", { query: { limit: PAGE } }), []);
  const [older, setOlder] = useState<AuditRecord[]>([]);
  const [olderDone, setOlderDone] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const reload = () => {
    setOlder([]);
    setOlderDone(false);
    setError(null);
    first.reload();
  };

  const rows = [...(first.data?.items ?? []), ...older];
  const canLoadMore = !olderDone && (first.data?.items.length ?? 0) >= PAGE;

  const loadMore = async () => {
    const last = rows[rows.length - 1];
    if (!last) return;
    setBusy(true);
    try {
      const page = await api.get<List<AuditRecord>>("/v1/audit", { query: { limit: PAGE, before: String(last.id) } });
      setOlder((prev) => [...prev, ...page.items]);
      if (page.items.length < PAGE) setOlderDone(true);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="page">
      <PageHeader
        title={t("audit.title")}
        subtitle={t("audit.subtitle")}
        actions={
          <>
            <span className="muted small">{t("audit.count", { n: rows.length })}</span>
            <button type="button" className="btn btn-secondary" onClick={reload} data-testid="audit-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={first.error ?? error} onDismiss={error ? () => setError(null) : undefined} />
      <Card>
        <table className="table table-compact" data-testid="audit-table">
          <thead>
            <tr>
              <th>{t("audit.time")}</th>
              <th>{t("audit.actor")}</th>
              <th>{t("audit.project")}</th>
              <th>{t("audit.method")}</th>
              <th>{t("audit.path")}</th>
              <th>{t("audit.status")}</th>
              <th>{t("audit.target")}</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={String(r.id)} data-testid="audit-row" data-method={r.method ?? ""} data-path={r.path ?? ""}>
                <td className="nowrap">{formatTime(r.time, lang)}</td>
                <td data-testid="audit-actor">{r.actor ?? "—"}</td>
                <td>{r.project ?? <span className="muted">—</span>}</td>
                <td>
                  <span className={`method method-${(r.method ?? "").toLowerCase()}`} data-testid="audit-method">
                    {r.method ?? "—"}
                  </span>
                </td>
                <td className="path-cell" data-testid="audit-path">
                  <code>{r.path ?? "—"}</code>
                </td>
                <td>
                  <span className={`status-code ${statusTone(r.status)}`} data-testid="audit-status">
                    {r.status ?? "—"}
                  </span>
                </td>
                <td className="target-cell">{r.target ?? <span className="muted">—</span>}</td>
              </tr>
            ))}
            {rows.length === 0 ? (
              <tr>
                <td colSpan={7} className="muted empty-cell">
                  {first.loading ? t("common.loading") : t("common.empty")}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
        {canLoadMore ? (
          <div className="table-footer">
            <button type="button" className="btn btn-secondary" disabled={busy} onClick={() => void loadMore()}>
              {t("audit.more")}
            </button>
          </div>
        ) : null}
      </Card>
    </div>
  );
}
