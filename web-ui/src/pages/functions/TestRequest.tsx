// The test request form: method, path (the function's route to start with),
// optional headers and a text body, sent with POST /v1/functions/{id}/invoke;
// the answer's status, time, headers and body are shown below it.
import { useState, type FormEvent } from "react";
import { api } from "../../api";
import { useI18n } from "../../i18n";
import { ErrorBanner } from "../../components/ui";
import { CreateButton, Field, useMutation } from "../network/shared";
import { Section } from "./Section";
import { fnPath, formatMs, parseHeaders, type Ctx, type FunctionResource, type InvokeResult } from "./shared";

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] as const;

function statusTone(status: number): string {
  if (status >= 200 && status < 400) return "ok";
  if (status >= 400 && status < 500) return "warn";
  return "bad";
}

export function TestRequest({ ctx, f, onDone }: { ctx: Ctx; f: FunctionResource; onDone: () => void }) {
  const { t } = useI18n();
  const m = useMutation();
  const [method, setMethod] = useState<string>("GET");
  const [path, setPath] = useState(f.spec?.route ?? "/");
  const [headers, setHeaders] = useState("");
  const [body, setBody] = useState("");
  const [result, setResult] = useState<InvokeResult | null>(null);
  const hasBody = method !== "GET" && method !== "HEAD";

  const send = async (e: FormEvent) => {
    e.preventDefault();
    let hs: Record<string, string>;
    try {
      hs = parseHeaders(headers, t);
    } catch (err) {
      m.setError(err);
      return;
    }
    setResult(null);
    let answer: InvokeResult | undefined;
    const ok = await m.run(async () => {
      answer = await api.post<InvokeResult>(fnPath(f, "/invoke"), { method, path, headers: hs, body: hasBody ? body : "" }, {
        query: ctx.scope,
      });
    }, onDone);
    if (ok && answer) setResult(answer);
  };

  return (
    <Section title={t("functions.test")} testId="functions-test">
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      <form className="net-form-stack" onSubmit={send} data-testid="functions-test-form">
        <div className="form-row">
          <Field label={t("functions.method")}>
            <select value={method} onChange={(e) => setMethod(e.target.value)} data-testid="functions-test-method">
              {METHODS.map((x) => (
                <option key={x} value={x}>
                  {x}
                </option>
              ))}
            </select>
          </Field>
          <Field label={t("functions.path")} grow>
            <input value={path} onChange={(e) => setPath(e.target.value)} required placeholder="/"
              data-testid="functions-test-path" />
          </Field>
        </div>
        <Field label={`${t("functions.headers")} (${t("functions.headersHint")})`}>
          <textarea value={headers} onChange={(e) => setHeaders(e.target.value)} rows={2} className="ctr-textarea"
            placeholder="content-type: text/plain" data-testid="functions-test-headers" />
        </Field>
        {hasBody ? (
          <Field label={t("functions.body")}>
            <textarea value={body} onChange={(e) => setBody(e.target.value)} rows={3} className="ctr-textarea"
              data-testid="functions-test-body" />
          </Field>
        ) : null}
        <div className="fn-actions">
          <CreateButton busy={m.busy} testId="functions-test-send" label={t("functions.send")} busyLabel={t("functions.sending")} />
        </div>
      </form>
      <p className="muted small net-note">{t("functions.testNote")}</p>
      {result ? <InvokeAnswer result={result} /> : null}
    </Section>
  );
}

function InvokeAnswer({ result }: { result: InvokeResult }) {
  const { t } = useI18n();
  const headers = Object.entries(result.headers ?? {});
  return (
    <div className="fn-answer" data-testid="functions-test-result" data-status={result.status}>
      <div className="fn-answer-head">
        <strong>{t("functions.response")}</strong>
        <span>
          {t("functions.status")}{" "}
          <span className={`status-code ${statusTone(result.status)}`} data-testid="functions-test-status">
            {result.status}
          </span>
        </span>
        <span>
          {t("functions.time")} <span data-testid="functions-test-ms" data-ms={result.ms}>{formatMs(result.ms)}</span>
        </span>
      </div>
      {headers.length ? (
        <table className="table table-compact net-rules-table" data-testid="functions-test-headers-out">
          <tbody>
            {headers.map(([k, v]) => (
              <tr key={k} data-testid="functions-test-header" data-name={k}>
                <td className="nowrap"><code className="net-mono">{k}</code></td>
                <td className="fn-wrap"><code className="net-mono">{v}</code></td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      <pre className="ctr-logs-output fn-answer-body" data-testid="functions-test-body-out">
        {result.body || <span className="ctr-logs-empty">{t("functions.emptyBody")}</span>}
      </pre>
      {result.truncated ? <p className="muted small">{t("functions.truncated")}</p> : null}
    </div>
  );
}
