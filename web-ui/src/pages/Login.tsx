import { useState, type FormEvent } from "react";
import { api } from "../api";
import { useI18n } from "../i18n";
import { ErrorBanner } from "../components/ui";
import { LanguageSwitch } from "../components/LanguageSwitch";

export function LoginPage({ onLoggedIn, startupError }: { onLoggedIn: () => Promise<void>; startupError?: unknown }) {
  const { t } = useI18n();
  const [username, setUsername] = useState("admin");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(startupError ?? null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api.login(username.trim(), password);
      await onLoggedIn();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <div className="login-page">
      <div className="login-lang">
        <LanguageSwitch />
      </div>
      <form className="login-card" onSubmit={submit} data-testid="login-form">
        <div className="brand brand-login">
          <span className="brand-mark" aria-hidden="true" />
          <div>
            <div className="brand-name">{t("app.name")}</div>
            <div className="brand-sub">{t("app.subtitle")}</div>
          </div>
        </div>
        <h1>{t("login.title")}</h1>
        <p className="muted">{t("login.subtitle")}</p>
        <ErrorBanner error={error} />
        <label className="field">
          <span>{t("login.username")}</span>
          <input
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
            autoFocus={!username}
            data-testid="login-username"
          />
        </label>
        <label className="field">
          <span>{t("login.password")}</span>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
            autoFocus={!!username}
            data-testid="login-password"
          />
        </label>
        <button type="submit" className="btn btn-primary btn-block" disabled={busy} data-testid="login-submit">
          {busy ? t("login.submitting") : t("login.submit")}
        </button>
        <p className="hint">{t("login.hint")}</p>
      </form>
    </div>
  );
}
