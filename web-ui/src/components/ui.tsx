import { useCallback, useEffect, useRef, useState, type ReactNode } from "react";
import { ApiError } from "../api";
import { useI18n } from "../i18n";
import { phaseTone } from "../format";

/** Shows an API error: message, and the offending field when the API names one. */
export function ErrorBanner({ error, onDismiss }: { error: unknown; onDismiss?: () => void }) {
  const { t } = useI18n();
  if (!error) return null;
  let message: string;
  let field: string | undefined;
  let code: string | undefined;
  if (error instanceof ApiError) {
    message = error.status === 0 ? t("error.network", { message: error.message }) : error.message;
    field = error.field;
    code = error.status === 0 ? undefined : `${error.status} ${error.code}`;
  } else if (error instanceof Error) {
    message = error.message;
  } else {
    message = String(error);
  }
  return (
    <div className="banner banner-error" role="alert" data-testid="error-banner">
      <div className="banner-body">
        <strong className="banner-title">{t("common.error")}</strong>
        <span data-testid="error-message">{message}</span>
        {field ? (
          <span className="banner-field" data-testid="error-field">
            {t("common.field")}: <code>{field}</code>
          </span>
        ) : null}
        {code ? <span className="banner-code">{code}</span> : null}
      </div>
      {onDismiss ? (
        <button type="button" className="btn btn-ghost btn-small" onClick={onDismiss}>
          {t("common.dismiss")}
        </button>
      ) : null}
    </div>
  );
}

export function Notice({ children, onDismiss }: { children: ReactNode; onDismiss?: () => void }) {
  const { t } = useI18n();
  return (
    <div className="banner banner-info" role="status" data-testid="notice">
      <div className="banner-body">{children}</div>
      {onDismiss ? (
        <button type="button" className="btn btn-ghost btn-small" onClick={onDismiss}>
          {t("common.dismiss")}
        </button>
      ) : null}
    </div>
  );
}

export function PhaseBadge({ phase, testId }: { phase?: string | null; testId?: string }) {
  const { t } = useI18n();
  return (
    <span className={`badge badge-${phaseTone(phase)}`} data-testid={testId}>
      {phase || t("common.unknown")}
    </span>
  );
}

export function PageHeader({ title, subtitle, actions }: { title: string; subtitle?: string; actions?: ReactNode }) {
  return (
    <div className="page-header">
      <div>
        <h1>{title}</h1>
        {subtitle ? <p className="page-subtitle">{subtitle}</p> : null}
      </div>
      {actions ? <div className="page-actions">{actions}</div> : null}
    </div>
  );
}

export function Card({ title, actions, children, className, testId }: {
  title?: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
  className?: string;
  testId?: string;
}) {
  return (
    <section className={`card ${className ?? ""}`} data-testid={testId}>
      {title || actions ? (
        <div className="card-header">
          {title ? <h2>{title}</h2> : <span />}
          {actions ? <div className="card-actions">{actions}</div> : null}
        </div>
      ) : null}
      <div className="card-body">{children}</div>
    </section>
  );
}

/** Delete button that asks for a second click before acting. */
export function DeleteButton({ onConfirm, disabled, testId }: {
  onConfirm: () => void;
  disabled?: boolean;
  testId?: string;
}) {
  const { t } = useI18n();
  const [armed, setArmed] = useState(false);
  if (!armed) {
    return (
      <button type="button" className="btn btn-danger-outline btn-small" disabled={disabled}
        onClick={() => setArmed(true)} data-testid={testId}>
        {t("common.delete")}
      </button>
    );
  }
  return (
    <span className="confirm-group">
      <button type="button" className="btn btn-danger btn-small" disabled={disabled}
        onClick={() => { setArmed(false); onConfirm(); }} data-testid={testId ? `${testId}-confirm` : undefined}>
        {t("common.confirmDelete")}
      </button>
      <button type="button" className="btn btn-ghost btn-small" onClick={() => setArmed(false)}>
        {t("common.cancel")}
      </button>
    </span>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads data with `load` whenever `deps` change or reload() is called.
 * Stale answers (from an older call) are dropped.
 */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const seq = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    const mine = ++seq.current;
    setLoading(true);
    loadRef.current().then(
      (value) => {
        if (mine !== seq.current) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (mine !== seq.current) return;
        setError(err);
        setLoading(false);
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick, ...deps]);

  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data, error, loading, reload };
}

/** Calls `fn` every `ms` milliseconds while the page is visible. */
export function useInterval(fn: () => void, ms: number): void {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => {
    const id = window.setInterval(() => {
      if (document.visibilityState !== "hidden") ref.current();
    }, ms);
    return () => window.clearInterval(id);
  }, [ms]);
}
