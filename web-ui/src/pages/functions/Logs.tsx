// The function's log: its last 200 lines (`TIME STREAM TEXT`, stream stdout,
// stderr or host), loaded when the panel opens, on Refresh and after each test
// request (`tick`). The newest line is kept in sight.
import { useLayoutEffect, useRef, useState } from "react";
import { api } from "../../api";
import { useI18n } from "../../i18n";
import { ErrorBanner, useLoad } from "../../components/ui";
import { Section } from "./Section";
import { fnPath, splitLines, type Ctx, type FunctionResource } from "./shared";

const TAIL = 200;

export function FunctionLog({ ctx, f, tick }: { ctx: Ctx; f: FunctionResource; tick: number }) {
  const { t } = useI18n();
  const [n, setN] = useState(0);
  const pre = useRef<HTMLPreElement>(null);
  const log = useLoad(async () => {
    const res = await api.stream(fnPath(f, "/logs"), { query: { ...ctx.scope, tail: TAIL } });
    return splitLines(await res.text());
  }, [f.id, ctx.scope?.project, tick, n]);
  const lines = log.data ?? [];

  useLayoutEffect(() => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [log.data]);

  return (
    <Section
      title={t("functions.log")}
      testId="functions-log"
      actions={
        <button type="button" className="btn btn-secondary btn-small" onClick={() => setN((x) => x + 1)}
          data-testid="functions-log-refresh">
          {t("functions.logLines", { n: TAIL })}
        </button>
      }
    >
      <ErrorBanner error={log.error} />
      <pre ref={pre} className="ctr-logs-output" data-testid="functions-log-output" data-lines={lines.length}
        data-loading={log.loading ? "true" : "false"}>
        {lines.length ? (
          lines.map((line, i) => <LogLine key={i} line={line} />)
        ) : (
          <span className="ctr-logs-empty">{log.loading ? t("common.loading") : t("functions.noLog")}</span>
        )}
      </pre>
    </Section>
  );
}

/** One line: the time dimmed, host lines (the gateway's own) tinted. */
function LogLine({ line }: { line: string }) {
  const match = /^(\S+) (stdout|stderr|host) (.*)$/.exec(line);
  if (!match) return <span className="fn-log-line">{line}</span>;
  const [, time, stream, text] = match;
  return (
    <span className={`fn-log-line fn-log-${stream}`}>
      <span className="fn-log-time">{time}</span> <span className="fn-log-stream">{stream}</span> {text}
    </span>
  );
}
