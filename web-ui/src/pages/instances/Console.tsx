// The Console tab of an instance: the live serial console (xterm.js on the
// websocket `GET /v1/instances/{id}/console/ws`, authenticated by the session
// cookie like every other request of the console) or the console log (`GET
// /v1/instances/{id}/console?tail=`). The daemon sends the guest's output as
// binary frames (text frames are written too); keystrokes go back as binary
// frames of UTF-8. The daemon refuses the upgrade (409) while no worker runs,
// which a browser only reports as a failed socket; the log stays readable.
import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { api } from "../../api";
import { useI18n } from "../../i18n";
import { ErrorBanner, useLoad } from "../../components/ui";
import { cleanLog, consoleSocketUrl, instPath, type Ctx, type InstanceResource } from "./shared";

const TAIL = 500;
const COLS = 100;
const ROWS = 26;

type Mode = "terminal" | "log";
type SocketState = "connecting" | "open" | "closed" | "failed";

export function InstanceConsole({ ctx, i }: { ctx: Ctx; i: InstanceResource }) {
  const { t } = useI18n();
  const [mode, setMode] = useState<Mode>("terminal");
  return (
    <div className="inst-console" data-testid="instance-console" data-mode={mode}>
      <div className="inst-console-head">
        <span className="inst-segmented" role="group" aria-label={t("instances.tabConsole")}>
          <button type="button" className={`btn btn-small ${mode === "terminal" ? "btn-primary" : "btn-secondary"}`}
            aria-pressed={mode === "terminal"} onClick={() => setMode("terminal")} data-testid="instance-console-live">
            {t("instances.consoleLive")}
          </button>
          <button type="button" className={`btn btn-small ${mode === "log" ? "btn-primary" : "btn-secondary"}`}
            aria-pressed={mode === "log"} onClick={() => setMode("log")} data-testid="instance-console-logview">
            {t("instances.consoleLog")}
          </button>
        </span>
      </div>
      {mode === "terminal" ? (
        <LiveConsole ctx={ctx} i={i} onShowLog={() => setMode("log")} />
      ) : (
        <ConsoleLog ctx={ctx} i={i} />
      )}
    </div>
  );
}

/** Bytes of a string whose characters are bytes (xterm's onBinary). */
function binaryBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let n = 0; n < s.length; n++) out[n] = s.charCodeAt(n) & 0xff;
  return out;
}

function LiveConsole({ ctx, i, onShowLog }: { ctx: Ctx; i: InstanceResource; onShowLog: () => void }) {
  const { t } = useI18n();
  const host = useRef<HTMLDivElement>(null);
  const [state, setState] = useState<SocketState>("connecting");
  const [rx, setRx] = useState(0);
  const [tx, setTx] = useState(0);
  // Bumped by Reconnect: a new terminal and socket.
  const [attempt, setAttempt] = useState(0);
  const project = ctx.scope?.project;
  const url = consoleSocketUrl(i, ctx.scope);
  const closedText = useRef("");
  closedText.current = t("instances.consoleClosed");

  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const term = new Terminal({
      cols: COLS,
      rows: ROWS,
      convertEol: false,
      cursorBlink: true,
      scrollback: 5000,
      fontSize: 13,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace',
      theme: { background: "#141b26", foreground: "#dbe3ee", cursor: "#8fb3f0" },
    });
    term.open(el);
    setState("connecting");
    setRx(0);
    setTx(0);
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    let opened = false;
    const encoder = new TextEncoder();
    const send = (bytes: Uint8Array) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(bytes);
      setTx((n) => n + bytes.length);
    };
    const onData = term.onData((data) => send(encoder.encode(data)));
    const onBinary = term.onBinary((data) => send(binaryBytes(data)));
    ws.onopen = () => {
      opened = true;
      setState("open");
      term.focus();
    };
    ws.onmessage = (ev: MessageEvent) => {
      if (typeof ev.data === "string") {
        term.write(ev.data);
        setRx((n) => n + encoder.encode(ev.data as string).length);
      } else if (ev.data instanceof ArrayBuffer) {
        term.write(new Uint8Array(ev.data));
        setRx((n) => n + (ev.data as ArrayBuffer).byteLength);
      }
    };
    ws.onclose = () => {
      setState(opened ? "closed" : "failed");
      if (opened) term.write(`\r\n\x1b[2m[${closedText.current}]\x1b[0m\r\n`);
    };
    return () => {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close();
      onData.dispose();
      onBinary.dispose();
      term.dispose();
    };
  }, [i.id, project, url, attempt]);

  const label =
    state === "connecting"
      ? t("instances.consoleConnecting")
      : state === "open"
        ? t("instances.consoleOpen")
        : state === "closed"
          ? t("instances.consoleEnded")
          : t("instances.consoleRefused");

  return (
    <div className="inst-live">
      <div className="inst-live-head">
        <span className={`live-dot ${state === "open" ? "live-open" : state === "connecting" ? "live-connecting" : ""}`}
          data-testid="instance-console-state" data-state={state}>
          {label}
        </span>
        <span className="muted small" data-testid="instance-console-bytes" data-rx={rx} data-tx={tx}>
          {t("instances.consoleBytes", { rx, tx })}
        </span>
        <span className="inst-live-actions">
          {state === "closed" || state === "failed" ? (
            <button type="button" className="btn btn-secondary btn-small" onClick={() => setAttempt((n) => n + 1)}
              data-testid="instance-console-reconnect">
              {t("instances.reconnect")}
            </button>
          ) : null}
        </span>
      </div>
      {state === "failed" ? (
        <div className="banner banner-error" role="alert" data-testid="instance-console-error">
          <div className="banner-body">
            <span>{t("instances.consoleRefusedHint", { phase: i.status?.phase ?? t("common.unknown") })}</span>
            <button type="button" className="btn btn-ghost btn-small" onClick={onShowLog}>
              {t("instances.showLog")}
            </button>
          </div>
        </div>
      ) : null}
      <div ref={host} className="inst-terminal" data-testid="instance-terminal" data-state={state} />
      <p className="muted small net-note">{t("instances.consoleNote")}</p>
    </div>
  );
}

function ConsoleLog({ ctx, i }: { ctx: Ctx; i: InstanceResource }) {
  const { t } = useI18n();
  const [n, setN] = useState(0);
  const pre = useRef<HTMLPreElement>(null);
  const log = useLoad(async () => {
    const res = await api.stream(instPath(i, "/console"), { query: { ...ctx.scope, tail: TAIL } });
    return cleanLog(await res.text());
  }, [i.id, ctx.scope?.project, n]);
  const text = log.data ?? "";

  useLayoutEffect(() => {
    const el = pre.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [log.data]);

  return (
    <div className="inst-log">
      <div className="inst-live-head">
        <strong>{t("instances.consoleLogTitle", { n: TAIL })}</strong>
        <span className="inst-live-actions">
          <button type="button" className="btn btn-secondary btn-small" onClick={() => setN((x) => x + 1)}
            data-testid="instance-console-log-refresh">
            {t("common.refresh")}
          </button>
        </span>
      </div>
      <ErrorBanner error={log.error} />
      <pre ref={pre} className="ctr-logs-output inst-log-output" data-testid="instance-console-log"
        data-loading={log.loading ? "true" : "false"} data-loaded={log.data !== undefined ? "true" : "false"}
        data-length={text.length}>
        {text ? (
          <span data-testid="instance-console-log-text">{text}</span>
        ) : (
          <span className="ctr-logs-empty">{log.loading ? t("common.loading") : t("instances.consoleLogEmpty")}</span>
        )}
      </pre>
    </div>
  );
}
