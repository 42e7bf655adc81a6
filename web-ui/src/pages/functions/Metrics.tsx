// The function's metrics since the daemon started: requests by outcome, cold
// and warm starts, mean / p50 / p99, and the latency histogram drawn as an SVG
// bar chart (one bar per bucket; counts are not cumulative, the last bucket is
// the overflow). Reloaded on Refresh and after each test request (`tick`).
import { useState } from "react";
import { api } from "../../api";
import { formatNumber } from "../../format";
import { useI18n, type MessageKey } from "../../i18n";
import { ErrorBanner, useLoad } from "../../components/ui";
import { Section } from "./Section";
import { fnPath, formatMs, OUTCOMES, type Ctx, type FunctionMetrics, type FunctionResource, type LatencyBucket, type Outcome } from "./shared";

const OUTCOME_LABEL: Record<Outcome, MessageKey> = {
  ok: "functions.ok",
  timeout: "functions.timedOut",
  failed: "functions.failed",
  busy: "functions.busy",
  too_large: "functions.tooLarge",
};

export function FunctionMetricsPanel({ ctx, f, tick }: { ctx: Ctx; f: FunctionResource; tick: number }) {
  const { t, lang } = useI18n();
  const [n, setN] = useState(0);
  const metrics = useLoad(
    () => api.get<FunctionMetrics>(fnPath(f, "/metrics"), { query: ctx.scope }),
    [f.id, ctx.scope?.project, tick, n, f.spec?.version],
  );
  const data = metrics.data;

  const stat = (id: string, label: string, value: number | undefined, shown?: string) => (
    <div className="stat fn-stat" key={id} data-testid={`functions-metric-${id}`} data-value={value ?? ""}>
      <div className="stat-value">{shown ?? formatNumber(value ?? 0, lang)}</div>
      <div className="stat-label">{label}</div>
    </div>
  );

  return (
    <Section
      title={t("functions.metrics")}
      testId="functions-metrics"
      actions={
        <button type="button" className="btn btn-secondary btn-small" onClick={() => setN((x) => x + 1)}
          data-testid="functions-metrics-refresh">
          {t("common.refresh")}
        </button>
      }
    >
      <ErrorBanner error={metrics.error} />
      {data ? (
        <>
          <p className="muted small fn-metrics-note" data-testid="functions-metrics-version" data-version={data.version}>
            {t("functions.metricsNote", { version: data.version })}
          </p>
          <div className="stats fn-stats">
            {OUTCOMES.map((o) => stat(o.replace("_", "-"), t(OUTCOME_LABEL[o]), data.invocations?.[o] ?? 0))}
            {stat("errors", t("functions.errors"), data.errors)}
            {stat("cold", t("functions.cold"), data.cold_starts)}
            {stat("warm", t("functions.warm"), data.warm_starts)}
          </div>
          <div className="stats fn-stats">
            {stat("mean", t("functions.mean"), data.mean_ms, formatMs(data.mean_ms))}
            {stat("p50", "p50", data.p50_ms ?? undefined, formatMs(data.p50_ms))}
            {stat("p99", "p99", data.p99_ms ?? undefined, formatMs(data.p99_ms))}
          </div>
          <h4 className="fn-chart-title">{t("functions.latency")}</h4>
          <LatencyChart buckets={data.latency ?? []} />
        </>
      ) : (
        <p className="muted small">{metrics.loading ? t("common.loading") : ""}</p>
      )}
    </Section>
  );
}

/** A bucket's bound as a short label: 0.5, 25, 1s, 2.5s; the overflow bucket "> 10s". */
function bucketLabel(b: LatencyBucket, prev: LatencyBucket | undefined): string {
  const short = (ms: number) => (ms >= 1000 ? `${ms / 1000}s` : `${ms}`);
  if (b.le_ms === null) return prev?.le_ms != null ? `>${short(prev.le_ms)}` : "∞";
  return short(b.le_ms);
}

const BAR = 30;
const GAP = 6;
const PLOT = 110;
const TOP = 16;
const BOTTOM = 30;

/** The latency histogram as bars (height ∝ count); every bar has its count and bound in a tooltip. */
export function LatencyChart({ buckets }: { buckets: LatencyBucket[] }) {
  const { t } = useI18n();
  const total = buckets.reduce((sum, b) => sum + b.count, 0);
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const width = buckets.length * (BAR + GAP) + GAP;
  const height = TOP + PLOT + BOTTOM;
  const base = TOP + PLOT;
  return (
    <div className="fn-chart" data-testid="functions-latency-chart" data-total={total}>
      <svg viewBox={`0 0 ${width} ${height}`} width="100%" role="img" aria-label={t("functions.chartLabel")}
        preserveAspectRatio="xMinYMid meet">
        <line x1={0} x2={width} y1={base + 0.5} y2={base + 0.5} className="fn-chart-axis" />
        {buckets.map((b, i) => {
          const h = b.count ? Math.max(2, Math.round((b.count / max) * PLOT)) : 0;
          const x = GAP + i * (BAR + GAP);
          const label = bucketLabel(b, buckets[i - 1]);
          return (
            <g key={i} data-testid="functions-latency-bar" data-le={b.le_ms ?? "inf"} data-count={b.count}>
              <title>{`${b.le_ms === null ? label : `≤ ${formatMs(b.le_ms)}`}: ${t("functions.requests", { n: b.count })}`}</title>
              <rect x={x} y={TOP} width={BAR} height={PLOT} className="fn-chart-slot" />
              {h ? <rect x={x} y={base - h} width={BAR} height={h} rx={2} className="fn-chart-bar" /> : null}
              {b.count ? (
                <text x={x + BAR / 2} y={base - h - 4} textAnchor="middle" className="fn-chart-count">
                  {b.count}
                </text>
              ) : null}
              <text x={x + BAR / 2} y={base + 14} textAnchor="middle" className="fn-chart-label">
                {label}
              </text>
            </g>
          );
        })}
        <text x={width - GAP} y={height - 3} textAnchor="end" className="fn-chart-label">
          ms
        </text>
      </svg>
      {total === 0 ? <p className="muted small">{t("functions.latencyNone")}</p> : null}
    </div>
  );
}
