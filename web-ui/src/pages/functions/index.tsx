// Functions: the WebAssembly HTTP components of a project. A card with the
// deploy form and the list of functions, then the detail panel of the chosen
// one: its settings and environment, versions (rollback), a test request, the
// log and the metrics with the latency chart. List.tsx and Deploy.tsx hold the
// first card, Detail.tsx the panel (with Settings.tsx, Versions.tsx,
// TestRequest.tsx, Logs.tsx and Metrics.tsx), shared.ts what they share.
import { useState } from "react";
import { api, type List } from "../../api";
import { useKindEvents } from "../../events";
import { useI18n } from "../../i18n";
import { ProjectPicker, useProjectScope } from "../../projectScope";
import { Card, ErrorBanner, Notice, PageHeader, useLoad } from "../../components/ui";
import { FunctionDetail } from "./Detail";
import { FunctionList } from "./List";
import { gatewayBase, type Ctx, type FunctionResource } from "./shared";
import "./functions.css";

export function FunctionsPage() {
  const { t } = useI18n();
  const ps = useProjectScope("/functions");
  const { project, scope, canWrite, deps } = ps;
  // The function the panel shows, per project (an id belongs to one project).
  const [chosen, setChosen] = useState<{ project: string; id: string } | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const functions = useLoad(() => api.get<List<FunctionResource>>("/v1/functions", { query: scope }), deps);
  useKindEvents(["function"], functions.reload);
  const site = useLoad(() => api.get<{ gateway_port?: number | null }>("/v1/site"), []);
  const gatewayPort = site.data ? (site.data.gateway_port ?? null) : undefined;

  const items = functions.data?.items ?? [];
  const selected = chosen?.project === project ? items.find((f) => f.id === chosen.id) : undefined;
  const ctx: Ctx = {
    scope,
    canWrite,
    functions: items,
    loaded: functions,
    reload: functions.reload,
    selected,
    select: (id) => setChosen(id ? { project, id } : null),
    gatewayPort,
    notify: setNotice,
  };
  const base = gatewayBase(gatewayPort);

  return (
    <div className="page" data-testid="functions-page">
      <PageHeader
        title={t("functions.title")}
        subtitle={t("functions.subtitle")}
        actions={
          <>
            <ProjectPicker scope={ps} label={t("functions.project")} testId="functions-project" />
            <button type="button" className="btn btn-secondary" onClick={functions.reload} data-testid="functions-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={ps.projectsError} />
      <p className="muted fn-gateway" data-testid="functions-gateway" data-port={gatewayPort ?? ""}>
        <strong>{t("functions.gateway")}</strong>{" "}
        {base ? (
          <>
            <code className="net-mono">{base}</code> <span className="small">{t("functions.gatewayHint")}</span>
          </>
        ) : gatewayPort === null ? (
          <span className="small">{t("functions.gatewayOff")}</span>
        ) : null}
      </p>
      {!canWrite ? <p className="muted">{t("functions.readOnly")}</p> : null}
      {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}

      {/* Keyed by project: switching projects starts every form afresh. */}
      <FunctionList key={`list-${project}`} ctx={ctx} />
      {selected ? (
        // Keyed by function: another function opens with empty forms.
        <FunctionDetail key={`fn-${project}-${selected.id}`} ctx={ctx} f={selected} />
      ) : (
        <Card testId="functions-detail-empty" className="net-card">
          <p className="muted" data-testid="functions-pick">
            {t(items.length ? "functions.pick" : "functions.empty")}
          </p>
        </Card>
      )}
    </div>
  );
}
