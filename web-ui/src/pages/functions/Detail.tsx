// The detail panel of one function: its gateway URL, delete, and the sections
// (settings and environment, versions, test request, metrics, log). A test
// request bumps `tick`, which refreshes the metrics and the log.
import { useState } from "react";
import { api } from "../../api";
import { useI18n } from "../../i18n";
import { Card, DeleteButton, ErrorBanner, Notice } from "../../components/ui";
import { useMutation } from "../network/shared";
import { FunctionLog } from "./Logs";
import { FunctionMetricsPanel } from "./Metrics";
import { EnvEditor, SettingsForm } from "./Settings";
import { TestRequest } from "./TestRequest";
import { Versions } from "./Versions";
import { fnPath, gatewayBase, type Ctx, type FunctionResource } from "./shared";

export function FunctionDetail({ ctx, f }: { ctx: Ctx; f: FunctionResource }) {
  const { t } = useI18n();
  const m = useMutation();
  const [notice, setNotice] = useState<string | null>(null);
  const [tick, setTick] = useState(0);
  const base = gatewayBase(ctx.gatewayPort);
  const route = f.spec?.route ?? "/";
  const generation = f.generation ?? f.updated_at ?? "";

  const remove = async () => {
    const ok = await m.run(() => api.del(fnPath(f), { query: ctx.scope }));
    if (!ok) return;
    ctx.select(null);
    ctx.notify(t("functions.deleted", { name: f.name }));
    ctx.reload();
  };

  /** After a PATCH: the list (and so this panel) shows the answer. */
  const saved = (text: string) => {
    setNotice(text);
    ctx.reload();
  };

  return (
    <Card
      title={t("functions.detail", { name: f.name })}
      testId="functions-detail"
      className="net-card fn-detail"
      actions={
        <>
          <button type="button" className="btn btn-ghost btn-small" onClick={() => ctx.select(null)}
            data-testid="functions-close">
            {t("functions.close")}
          </button>
          {ctx.canWrite ? <DeleteButton onConfirm={() => void remove()} disabled={m.busy} testId="functions-delete" /> : null}
        </>
      }
    >
      <div data-testid="functions-detail-body" data-name={f.name} data-version={f.spec?.version ?? ""}>
        <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
        {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}
        <p className="muted fn-url" data-testid="functions-url">
          <strong>{t("functions.url")}</strong>{" "}
          {base ? (
            <>
              <code className="net-mono">{`${base}${route}`}</code>
              {f.spec?.host ? <span className="small"> {t("functions.hostHeader", { host: f.spec.host })}</span> : null}
            </>
          ) : (
            <span className="small">{t("functions.gatewayOff")}</span>
          )}
        </p>
        <div className="fn-grid">
          <div className="fn-col">
            {/* Keyed by generation: a saved change (or one made elsewhere) resets the forms to the stored spec. */}
            <EnvEditor key={`env-${generation}`} ctx={ctx} f={f} onSaved={saved} />
            <SettingsForm key={`set-${generation}`} ctx={ctx} f={f} onSaved={saved} />
            <Versions ctx={ctx} f={f} onSaved={saved} />
          </div>
          <div className="fn-col">
            {ctx.canWrite ? <TestRequest ctx={ctx} f={f} onDone={() => setTick((n) => n + 1)} /> : null}
            <FunctionMetricsPanel ctx={ctx} f={f} tick={tick} />
          </div>
        </div>
        <FunctionLog ctx={ctx} f={f} tick={tick} />
      </div>
    </Card>
  );
}

