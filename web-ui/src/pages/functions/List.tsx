// The first card of the Functions page: the deploy form (writers only) and the
// table of the project's functions; a row's name or Open button opens the
// detail panel.
import { formatAgo, formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { Card, ErrorBanner } from "../../components/ui";
import { DeployForm } from "./Deploy";
import type { Ctx, FunctionResource } from "./shared";

export function FunctionList({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const { functions, loaded } = ctx;
  const head = [
    t("common.name"),
    t("functions.route"),
    t("functions.host"),
    t("functions.serving"),
    t("functions.kept"),
    t("functions.age"),
    "",
  ];
  return (
    <Card
      title={
        <>
          {t("functions.list")} <span className="badge badge-muted net-count">{functions.length}</span>
        </>
      }
      testId="functions-card"
      className="net-card"
    >
      {loaded.error ? <ErrorBanner error={loaded.error} /> : null}
      {ctx.canWrite ? <DeployForm ctx={ctx} /> : null}
      <div className="net-table">
        <table className="table" data-testid="functions-table">
          <thead>
            <tr>
              {head.map((h, i) => (
                <th key={i} className={i === head.length - 1 ? "actions-col" : undefined}>
                  {h}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {functions.map((f) => (
              <FunctionRow key={f.id} f={f} ctx={ctx} />
            ))}
            {functions.length === 0 ? (
              <tr>
                <td colSpan={head.length} className="muted empty-cell">
                  {loaded.loading ? t("common.loading") : t("functions.empty")}
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </div>
    </Card>
  );
}

function FunctionRow({ f, ctx }: { f: FunctionResource; ctx: Ctx }) {
  const { t, lang } = useI18n();
  const open = ctx.selected?.id === f.id;
  const spec = f.spec;
  const versions = spec?.versions ?? [];
  return (
    <tr data-testid="functions-row" data-name={f.name} data-id={f.id} data-version={spec?.version ?? ""}
      className={open ? "net-open" : undefined}>
      <td className="name-cell">
        <button type="button" className="obj-link" onClick={() => ctx.select(f.id)}
          aria-current={open ? "true" : undefined} data-testid="functions-name">
          {f.name}
        </button>
      </td>
      <td data-testid="functions-route-cell">
        <code className="net-mono">{spec?.route ?? "/"}</code>
      </td>
      <td data-testid="functions-host-cell">
        {spec?.host ? <code className="net-mono">{spec.host}</code> : <span className="muted">{t("functions.anyHost")}</span>}
      </td>
      <td className="nowrap" data-testid="functions-version-cell">
        {spec?.version ? <span className="badge badge-ok">v{spec.version}</span> : "—"}
      </td>
      <td className="nowrap" data-testid="functions-kept-cell" data-count={versions.length}>
        {versions.length ? versions.map((v) => `v${v}`).join(", ") : "—"}
      </td>
      <td className="nowrap">
        <span title={formatTime(f.created_at, lang)}>{formatAgo(f.created_at, lang)}</span>
      </td>
      <td className="actions-col">
        <button type="button" className="btn btn-secondary btn-small" disabled={open}
          onClick={() => ctx.select(f.id)} data-testid="functions-open">
          {t("functions.open")}
        </button>
      </td>
    </tr>
  );
}
