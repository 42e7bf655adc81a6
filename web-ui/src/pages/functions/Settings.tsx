// A function's settings, each saved with a PATCH of its spec (a JSON merge
// patch): the environment variables as key/value rows (a removed variable is
// sent as null), and the route, host, limits and allowed hosts.
import { useRef, useState, type FormEvent } from "react";
import { api } from "../../api";
import { useI18n } from "../../i18n";
import { ErrorBanner } from "../../components/ui";
import { CreateButton, Field, useMutation } from "../network/shared";
import { Section } from "./Section";
import { fnPath, parseCount, parseHosts, type Ctx, type FunctionResource, type FunctionSpec } from "./shared";

interface Row {
  id: number;
  key: string;
  value: string;
}

/** PATCHes `spec` (a merge patch) of `f`. */
function patchSpec(ctx: Ctx, f: FunctionResource, spec: Record<string, unknown>) {
  return api.patch<FunctionResource>(fnPath(f), { spec }, { query: ctx.scope });
}

export function EnvEditor({ ctx, f, onSaved }: { ctx: Ctx; f: FunctionResource; onSaved: (text: string) => void }) {
  const { t } = useI18n();
  const m = useMutation();
  const stored = f.spec?.env ?? {};
  const next = useRef(0);
  const row = (key: string, value: string): Row => ({ id: next.current++, key, value });
  const [rows, setRows] = useState<Row[]>(() => Object.entries(stored).map(([k, v]) => row(k, v)));

  const change = (id: number, part: Partial<Row>) => setRows((rs) => rs.map((r) => (r.id === id ? { ...r, ...part } : r)));

  const save = async (e: FormEvent) => {
    e.preventDefault();
    const env: Record<string, string | null> = {};
    for (const r of rows) {
      const key = r.key.trim();
      if (!key) {
        if (r.value) {
          m.setError(new Error(t("functions.envNoKey")));
          return;
        }
        continue;
      }
      if (key in env) {
        m.setError(new Error(t("functions.envDuplicate", { key })));
        return;
      }
      env[key] = r.value;
    }
    for (const key of Object.keys(stored)) if (!(key in env)) env[key] = null;
    const ok = await m.run(() => patchSpec(ctx, f, { env }));
    if (ok) onSaved(t("functions.envSaved", { name: f.name }));
  };

  if (!ctx.canWrite) {
    const entries = Object.entries(stored);
    return (
      <Section title={t("functions.env")} testId="functions-env">
        {entries.length ? (
          <table className="table table-compact net-rules-table">
            <tbody>
              {entries.map(([k, v]) => (
                <tr key={k} data-testid="functions-env-row" data-key={k}>
                  <td><code className="net-mono">{k}</code></td>
                  <td><code className="net-mono">{v}</code></td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p className="muted small">{t("functions.envEmpty")}</p>
        )}
      </Section>
    );
  }

  return (
    <Section title={t("functions.env")} testId="functions-env">
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      <form className="fn-env" onSubmit={save} data-testid="functions-env-form">
        {rows.length === 0 ? <p className="muted small" data-testid="functions-env-empty">{t("functions.envEmpty")}</p> : null}
        {rows.map((r) => (
          <div key={r.id} className="fn-env-row" data-testid="functions-env-row" data-key={r.key}>
            <input value={r.key} onChange={(e) => change(r.id, { key: e.target.value })} placeholder="NAME"
              aria-label={t("functions.envKey")} className="fn-env-key" data-testid="functions-env-key" />
            <span className="muted">=</span>
            <input value={r.value} onChange={(e) => change(r.id, { value: e.target.value })}
              aria-label={t("functions.envValue")} className="fn-env-value" data-testid="functions-env-value" />
            <button type="button" className="btn btn-ghost btn-small" onClick={() => setRows((rs) => rs.filter((x) => x.id !== r.id))}
              data-testid="functions-env-remove">
              {t("functions.envRemove")}
            </button>
          </div>
        ))}
        <div className="fn-actions">
          <button type="button" className="btn btn-secondary btn-small" onClick={() => setRows((rs) => [...rs, row("", "")])}
            data-testid="functions-env-add">
            {t("functions.envAdd")}
          </button>
          <CreateButton busy={m.busy} testId="functions-env-save" label={t("functions.envSave")} busyLabel={t("functions.saving")} />
        </div>
      </form>
      <p className="muted small net-note">{t("functions.envNote")}</p>
    </Section>
  );
}

export function SettingsForm({ ctx, f, onSaved }: { ctx: Ctx; f: FunctionResource; onSaved: (text: string) => void }) {
  const { t } = useI18n();
  const m = useMutation();
  const s: FunctionSpec = f.spec ?? { route: "/" };
  const [route, setRoute] = useState(s.route ?? "/");
  const [host, setHost] = useState(s.host ?? "");
  const [memory, setMemory] = useState(String(s.memory_mib ?? ""));
  const [timeout, setTimeoutMs] = useState(String(s.timeout_ms ?? ""));
  const [concurrency, setConcurrency] = useState(String(s.max_concurrency ?? ""));
  const [maxBody, setMaxBody] = useState(String(s.max_body_bytes ?? ""));
  const [hosts, setHosts] = useState((s.allowed_hosts ?? []).join("\n"));
  const ro = !ctx.canWrite;

  const save = async (e: FormEvent) => {
    e.preventDefault();
    const spec: Record<string, unknown> = {};
    try {
      const numbers: [keyof FunctionSpec, string, string][] = [
        ["memory_mib", memory, t("functions.memory")],
        ["timeout_ms", timeout, t("functions.timeout")],
        ["max_concurrency", concurrency, t("functions.concurrency")],
        ["max_body_bytes", maxBody, t("functions.maxBody")],
      ];
      for (const [key, text, label] of numbers) {
        const n = parseCount(text, label, t);
        if (n !== undefined && n !== s[key]) spec[key] = n;
      }
    } catch (err) {
      m.setError(err);
      return;
    }
    if (route.trim() !== s.route) spec.route = route.trim();
    if (host.trim() !== (s.host ?? "")) spec.host = host.trim() || null;
    const allowed = parseHosts(hosts);
    if (allowed.join("\n") !== (s.allowed_hosts ?? []).join("\n")) spec.allowed_hosts = allowed;
    const ok = await m.run(() => patchSpec(ctx, f, spec));
    if (ok) onSaved(t("functions.saved", { name: f.name }));
  };

  return (
    <Section title={t("functions.settings")} testId="functions-settings">
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      <form className="net-form-stack" onSubmit={save} data-testid="functions-settings-form">
        <div className="form-row">
          <Field label={t("functions.route")}>
            <input value={route} onChange={(e) => setRoute(e.target.value)} readOnly={ro} size={14} data-testid="functions-settings-route" />
          </Field>
          <Field label={t("functions.host")} grow>
            <input value={host} onChange={(e) => setHost(e.target.value)} readOnly={ro} placeholder={t("functions.anyHost")}
              data-testid="functions-settings-host" />
          </Field>
        </div>
        <div className="form-row">
          <Field label={t("functions.memory")}>
            <input value={memory} onChange={(e) => setMemory(e.target.value)} readOnly={ro} inputMode="numeric" size={7}
              data-testid="functions-settings-memory" />
          </Field>
          <Field label={t("functions.timeout")}>
            <input value={timeout} onChange={(e) => setTimeoutMs(e.target.value)} readOnly={ro} inputMode="numeric" size={7}
              data-testid="functions-settings-timeout" />
          </Field>
          <Field label={t("functions.concurrency")}>
            <input value={concurrency} onChange={(e) => setConcurrency(e.target.value)} readOnly={ro} inputMode="numeric" size={5}
              data-testid="functions-settings-concurrency" />
          </Field>
          <Field label={t("functions.maxBody")}>
            <input value={maxBody} onChange={(e) => setMaxBody(e.target.value)} readOnly={ro} inputMode="numeric" size={10}
              data-testid="functions-settings-max-body" />
          </Field>
        </div>
        <Field label={`${t("functions.allowedHosts")} (${t("functions.allowedHostsHint")})`}>
          <textarea value={hosts} onChange={(e) => setHosts(e.target.value)} readOnly={ro} rows={2} className="ctr-textarea"
            placeholder="api.example.com:443" data-testid="functions-settings-allowed-hosts" />
        </Field>
        {ctx.canWrite ? (
          <div className="fn-actions">
            <CreateButton busy={m.busy} testId="functions-settings-save" label={t("functions.save")} busyLabel={t("functions.saving")} />
          </div>
        ) : null}
      </form>
      <p className="muted small net-note">{t("functions.settingsNote")}</p>
    </Section>
  );
}
