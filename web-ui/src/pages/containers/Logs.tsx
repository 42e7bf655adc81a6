// The log panel of one container: the last 200 lines, then (when following)
// every new line as the daemon streams it, until the container stops. The
// stream is a plain fetch read chunk by chunk; it is aborted when the panel
// closes, the page changes or another view is asked for.
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { api, seg, type ContainerResource } from "../../api";
import { useI18n } from "../../i18n";
import { ErrorBanner } from "../../components/ui";
import { MAX_LOG_LINES, type Scope } from "./shared";

const TAIL = 200;

type State = "loading" | "following" | "ended" | "snapshot";

function capped(lines: string[]): string[] {
  return lines.length > MAX_LOG_LINES ? lines.slice(lines.length - MAX_LOG_LINES) : lines;
}

/** Text into lines; a final newline does not make an empty last line. */
function splitLines(text: string): string[] {
  if (!text) return [];
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines;
}

export function ContainerLogs({ container, scope, onClose }: {
  container: ContainerResource;
  scope: Scope;
  onClose: () => void;
}) {
  const { t } = useI18n();
  const [lines, setLines] = useState<string[]>([]);
  const [state, setState] = useState<State>("loading");
  const [error, setError] = useState<unknown>(null);
  // What to show: follow live, or a one-off snapshot; `n` makes a repeated click reload.
  const [view, setView] = useState<{ follow: boolean; n: number }>({ follow: true, n: 0 });
  const pre = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  const project = scope?.project;
  // A following panel picks the new run up when the container starts again.
  const run = view.follow ? (container.status?.started_at ?? "") : "";

  useEffect(() => {
    const abort = new AbortController();
    const query = { project, tail: TAIL, follow: view.follow ? "true" : undefined };
    setLines([]);
    setError(null);
    setState("loading");
    stick.current = true;
    const read = async () => {
      const res = await api.stream(`/v1/containers/${seg(container.id)}/logs`, { query, signal: abort.signal });
      if (!view.follow || !res.body) {
        setLines(capped(splitLines(await res.text())));
        setState(view.follow ? "ended" : "snapshot");
        return;
      }
      setState("following");
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let partial = "";
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        partial += decoder.decode(value, { stream: true });
        const complete = partial.split("\n");
        partial = complete.pop() ?? "";
        if (complete.length) setLines((prev) => capped([...prev, ...complete]));
      }
      partial += decoder.decode();
      if (partial) setLines((prev) => capped([...prev, partial]));
      setState("ended");
    };
    read().catch((err: unknown) => {
      if (abort.signal.aborted) return;
      setError(err);
      setState("ended");
    });
    return () => abort.abort();
  }, [container.id, project, view, run]);

  // Keep the newest line in sight unless the reader scrolled up.
  useLayoutEffect(() => {
    const el = pre.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);
  const onScroll = () => {
    const el = pre.current;
    if (el) stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 16;
  };

  const status =
    state === "loading"
      ? t("common.loading")
      : state === "following"
        ? t("containers.following")
        : state === "ended"
          ? t("containers.streamEnded")
          : t("containers.snapshot", { n: TAIL });

  return (
    <div className="net-rules ctr-logs" data-testid="container-logs" data-container={container.name} data-state={state}>
      <div className="ctr-logs-head">
        <strong>{t("containers.logsOf", { name: container.name })}</strong>
        <span className={`live-dot ${state === "following" ? "live-open" : state === "loading" ? "live-connecting" : ""}`}
          data-testid="container-logs-state">
          {status}
        </span>
        <span className="ctr-logs-actions">
          <button type="button" className="btn btn-secondary btn-small"
            onClick={() => setView((v) => ({ follow: true, n: v.n + 1 }))} data-testid="container-logs-follow">
            {t("containers.follow")}
          </button>
          <button type="button" className="btn btn-secondary btn-small"
            onClick={() => setView((v) => ({ follow: false, n: v.n + 1 }))} data-testid="container-logs-refresh">
            {t("containers.lastLines", { n: TAIL })}
          </button>
          <button type="button" className="btn btn-ghost btn-small" onClick={onClose} data-testid="container-logs-close">
            {t("containers.close")}
          </button>
        </span>
      </div>
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <pre ref={pre} className="ctr-logs-output" onScroll={onScroll} data-testid="container-logs-output">
        {lines.length ? lines.join("\n") : <span className="ctr-logs-empty">{state === "loading" ? t("common.loading") : t("containers.noLogs")}</span>}
      </pre>
    </div>
  );
}
