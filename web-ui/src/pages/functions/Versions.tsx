// The versions a function keeps, newest first: the one served has a badge, the
// others a "Roll back to" (older) or "Serve" (newer) button that PATCHes
// `spec.version`. Only the version served changes; the settings stay.
import { useI18n } from "../../i18n";
import { api } from "../../api";
import { ErrorBanner } from "../../components/ui";
import { useMutation } from "../network/shared";
import { Section } from "./Section";
import { fnPath, type Ctx, type FunctionResource } from "./shared";

export function Versions({ ctx, f, onSaved }: { ctx: Ctx; f: FunctionResource; onSaved: (text: string) => void }) {
  const { t } = useI18n();
  const m = useMutation();
  const served = f.spec?.version ?? 0;
  const kept = [...(f.spec?.versions ?? [])].sort((a, b) => b - a);

  const serve = async (n: number) => {
    const ok = await m.run(() => api.patch(fnPath(f), { spec: { version: n } }, { query: ctx.scope }));
    if (ok) onSaved(t("functions.nowServing", { name: f.name, n }));
  };

  return (
    <Section title={t("functions.versions")} testId="functions-versions">
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      <table className="table table-compact net-rules-table" data-testid="functions-versions-table">
        <tbody>
          {kept.map((n) => (
            <tr key={n} data-testid="functions-version-row" data-version={n} data-serving={n === served ? "true" : "false"}>
              <td className="nowrap">
                <strong>v{n}</strong>
              </td>
              <td className="actions-col">
                {n === served ? (
                  <span className="badge badge-ok" data-testid="functions-version-serving">{t("functions.servingBadge")}</span>
                ) : ctx.canWrite ? (
                  <button type="button" className="btn btn-secondary btn-small" disabled={m.busy}
                    onClick={() => void serve(n)} data-testid="functions-version-serve">
                    {n < served ? t("functions.rollback", { n }) : t("functions.serve", { n })}
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="muted small net-note">{t("functions.versionsNote")}</p>
    </Section>
  );
}
