// The deploy form: a name, a route, the .wasm component and optional limits.
// The file is POSTed as the body (application/wasm); the first deploy of a name
// creates the function with these settings, a later one adds a version. A
// component the daemon refuses comes back as 422 naming the field `body`.
import { useRef, useState, type FormEvent } from "react";
import { api } from "../../api";
import { formatBytes } from "../../format";
import { useI18n } from "../../i18n";
import { ErrorBanner, Notice } from "../../components/ui";
import { CreateButton, Field, useMutation } from "../network/shared";
import { parseCount, type Ctx, type FunctionResource } from "./shared";

export function DeployForm({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const [route, setRoute] = useState("/");
  const [host, setHost] = useState("");
  const [memory, setMemory] = useState("");
  const [timeout, setTimeoutMs] = useState("");
  const [concurrency, setConcurrency] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const fileInput = useRef<HTMLInputElement>(null);

  const deploy = async (e: FormEvent) => {
    e.preventDefault();
    setNotice(null);
    if (!file) {
      m.setError(new Error(t("functions.noFile")));
      return;
    }
    let limits: Record<string, number | undefined>;
    try {
      limits = {
        memory_mib: parseCount(memory, t("functions.memory"), t),
        timeout_ms: parseCount(timeout, t("functions.timeout"), t),
        max_concurrency: parseCount(concurrency, t("functions.concurrency"), t),
      };
    } catch (err) {
      m.setError(err);
      return;
    }
    let made: FunctionResource | undefined;
    const ok = await m.run(async () => {
      made = await api.upload<FunctionResource>("/v1/functions/deploy", file, "application/wasm", {
        query: { ...ctx.scope, name: name.trim(), route: route.trim(), host: host.trim(), ...limits },
      });
    }, ctx.reload);
    if (!ok || !made) return;
    setNotice(t("functions.deployed", { name: made.name, version: made.spec?.version ?? "?" }));
    setFile(null);
    if (fileInput.current) fileInput.current.value = "";
    ctx.select(made.id);
  };

  return (
    <div className="fn-deploy">
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      {notice ? <Notice onDismiss={() => setNotice(null)}>{notice}</Notice> : null}
      <form className="net-form-stack" onSubmit={deploy} data-testid="functions-deploy-form">
        <div className="form-row">
          <Field label={t("common.name")} grow>
            <input value={name} onChange={(e) => setName(e.target.value)} required placeholder="hello"
              data-testid="functions-deploy-name" />
          </Field>
          <Field label={t("functions.route")}>
            <input value={route} onChange={(e) => setRoute(e.target.value)} size={14} placeholder="/"
              data-testid="functions-deploy-route" />
          </Field>
          <Field label={t("functions.host")}>
            <input value={host} onChange={(e) => setHost(e.target.value)} size={16} placeholder={t("functions.optional")}
              data-testid="functions-deploy-host" />
          </Field>
          {/* The native file input is hidden so that its button and text follow the console's language. */}
          <Field label={t("functions.component")} grow>
            <input
              ref={fileInput}
              type="file"
              accept=".wasm,application/wasm"
              onChange={(e) => setFile(e.target.files?.[0] ?? null)}
              className="visually-hidden ctr-file-input"
              data-testid="functions-deploy-file"
            />
            <span className="ctr-file">
              <span className="ctr-file-button">{t("functions.chooseFile")}</span>
              <span className={file ? "ctr-file-name" : "ctr-file-name muted"} data-testid="functions-deploy-file-name">
                {file ? `${file.name} (${formatBytes(file.size)})` : t("functions.noFileChosen")}
              </span>
            </span>
          </Field>
        </div>
        <div className="form-row">
          <Field label={t("functions.memory")}>
            <input value={memory} onChange={(e) => setMemory(e.target.value)} inputMode="numeric" size={8} placeholder="64"
              data-testid="functions-deploy-memory" />
          </Field>
          <Field label={t("functions.timeout")}>
            <input value={timeout} onChange={(e) => setTimeoutMs(e.target.value)} inputMode="numeric" size={8} placeholder="1000"
              data-testid="functions-deploy-timeout" />
          </Field>
          <Field label={t("functions.concurrency")}>
            <input value={concurrency} onChange={(e) => setConcurrency(e.target.value)} inputMode="numeric" size={8} placeholder="16"
              data-testid="functions-deploy-concurrency" />
          </Field>
          <CreateButton busy={m.busy} disabled={!file || !name.trim()} testId="functions-deploy"
            label={t("functions.deploy")} busyLabel={t("functions.deploying")} />
        </div>
      </form>
      <p className="muted small net-note">{t("functions.deployNote")}</p>
    </div>
  );
}
