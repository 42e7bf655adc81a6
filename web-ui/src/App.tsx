import { useCallback, useEffect, useMemo, useState, type ReactNode } from "react";
import { api, ApiError, setUnauthorizedHandler, type Whoami } from "./api";
import { EventFeed, EventFeedProvider } from "./events";
import { roleLabel, useI18n, type MessageKey } from "./i18n";
import { LanguageSwitch } from "./components/LanguageSwitch";
import { Icon, type IconName } from "./components/Icon";
import { Link, navigate, usePath } from "./router";
import { SessionContext, sessionFrom } from "./session";
import { LoginPage } from "./pages/Login";
import { OverviewPage } from "./pages/Overview";
import { ProjectsPage } from "./pages/Projects";
import { TokensPage } from "./pages/Tokens";
import { AuditPage } from "./pages/Audit";
import { NetworkPage } from "./pages/network";
import { ContainersPage } from "./pages/containers";
import { StoragePage } from "./pages/storage";
import { ObjectsPage } from "./pages/objects";
import { FunctionsPage } from "./pages/functions";
import { InstancesPage } from "./pages/instances";

type Auth =
  | { state: "checking" }
  | { state: "anonymous"; error?: unknown }
  | { state: "signed-in"; who: Whoami };

const NAV: { path: string; label: MessageKey; icon: IconName; testId: string; adminOnly?: boolean }[] = [
  { path: "/", label: "nav.overview", icon: "overview", testId: "nav-overview" },
  { path: "/projects", label: "nav.projects", icon: "projects", testId: "nav-projects" },
  { path: "/tokens", label: "nav.tokens", icon: "tokens", testId: "nav-tokens" },
  { path: "/network", label: "nav.network", icon: "network", testId: "nav-network" },
  { path: "/instances", label: "nav.instances", icon: "instances", testId: "nav-instances" },
  { path: "/containers", label: "nav.containers", icon: "containers", testId: "nav-containers" },
  { path: "/storage", label: "nav.storage", icon: "storage", testId: "nav-storage" },
  { path: "/objects", label: "nav.objects", icon: "objects", testId: "nav-objects" },
  { path: "/functions", label: "nav.functions", icon: "functions", testId: "nav-functions" },
  { path: "/audit", label: "nav.audit", icon: "audit", testId: "nav-audit", adminOnly: true },
];

export function App() {
  const path = usePath();
  const { t } = useI18n();
  const [auth, setAuth] = useState<Auth>({ state: "checking" });
  const feed = useMemo(() => new EventFeed(), []);

  const checkSession = useCallback(async () => {
    try {
      const who = await api.whoami();
      setAuth({ state: "signed-in", who });
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) setAuth({ state: "anonymous" });
      else setAuth({ state: "anonymous", error: err });
    }
  }, []);

  // On start: who am I? 401 → the login page.
  useEffect(() => {
    void checkSession();
  }, [checkSession]);

  // Any 401 later (expired or revoked session) sends the user back to login.
  useEffect(() => {
    setUnauthorizedHandler(() => setAuth({ state: "anonymous" }));
    return () => setUnauthorizedHandler(null);
  }, []);

  // A refused event stream may mean the session is gone: ask whoami.
  useEffect(() => {
    feed.onRefused = () => {
      api.whoami().catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 401) setAuth({ state: "anonymous" });
      });
    };
    return () => {
      feed.onRefused = null;
    };
  }, [feed]);

  // The event stream runs while signed in.
  useEffect(() => {
    if (auth.state === "signed-in") feed.start();
    else feed.stop();
  }, [auth.state, feed]);
  useEffect(() => () => feed.stop(), [feed]);

  // Route guards: signed-out users go to /login (remembering where they were going),
  // signed-in users leave /login for that place or the overview.
  useEffect(() => {
    if (auth.state === "anonymous" && path !== "/login") {
      const next = path === "/" ? "" : `?next=${encodeURIComponent(path + window.location.search)}`;
      navigate(`/login${next}`, { replace: true });
    }
    if (auth.state === "signed-in" && path === "/login") navigate(safeNext(window.location.search), { replace: true });
  }, [auth.state, path]);

  const onLoggedIn = useCallback(() => checkSession(), [checkSession]);

  const onLogout = useCallback(async () => {
    try {
      await api.logout();
    } catch {
      // the session is dropped on our side either way
    }
    feed.clear();
    navigate("/login");
    setAuth({ state: "anonymous" });
  }, [feed]);

  if (auth.state === "checking") {
    return <div className="splash">{t("app.loading")}</div>;
  }

  if (auth.state === "anonymous") {
    return <LoginPage onLoggedIn={onLoggedIn} startupError={auth.error} />;
  }

  const session = sessionFrom(auth.who);
  return (
    <SessionContext.Provider value={session}>
      <EventFeedProvider feed={feed}>
        <Shell who={auth.who} path={path} onLogout={onLogout}>
          <Route path={path} />
        </Shell>
      </EventFeedProvider>
    </SessionContext.Provider>
  );
}

/** The `next` query parameter if it is a local path, else the overview. */
function safeNext(search: string): string {
  const next = new URLSearchParams(search).get("next");
  return next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/login") ? next : "/";
}

function Route({ path }: { path: string }) {
  const { t } = useI18n();
  const clean = path.length > 1 ? path.replace(/\/+$/, "") : path;
  switch (clean) {
    case "/":
    case "/login":
      return <OverviewPage />;
    case "/projects":
      return <ProjectsPage />;
    case "/tokens":
      return <TokensPage />;
    case "/audit":
      return <AuditPage />;
    case "/network":
      return <NetworkPage />;
    case "/instances":
      return <InstancesPage />;
    case "/containers":
      return <ContainersPage />;
    case "/storage":
      return <StoragePage />;
    case "/objects":
      return <ObjectsPage />;
    case "/functions":
      return <FunctionsPage />;
    default:
      return (
        <div className="empty-page">
          <h1>{t("notFound.title")}</h1>
          <p>
            <code>{path}</code>
          </p>
          <Link to="/" className="btn btn-primary">
            {t("notFound.back")}
          </Link>
        </div>
      );
  }
}

function Shell({ who, path, onLogout, children }: {
  who: Whoami;
  path: string;
  onLogout: () => void;
  children: ReactNode;
}) {
  const { t } = useI18n();
  return (
    <div className="shell">
      <aside className="sidebar">
        <div className="brand">
          <span className="brand-mark" aria-hidden="true" />
          <div>
            <div className="brand-name">{t("app.name")}</div>
            <div className="brand-sub">{t("app.subtitle")}</div>
          </div>
        </div>
        <nav className="nav" aria-label={t("nav.section")}>
          <div className="nav-section">{t("nav.section")}</div>
          {NAV.filter((item) => !item.adminOnly || who.site_admin || who.role === "admin").map((item) => {
            const active = item.path === "/" ? path === "/" : path.startsWith(item.path);
            return (
              <Link
                key={item.path}
                to={item.path}
                className={`nav-link ${active ? "active" : ""}`}
                aria-current={active ? "page" : undefined}
                data-testid={item.testId}
              >
                <span className="nav-icon">
                  <Icon name={item.icon} />
                </span>
                {t(item.label)}
              </Link>
            );
          })}
        </nav>
      </aside>
      <div className="main">
        <header className="topbar">
          <div className="identity" data-testid="identity">
            <span className="identity-item">
              <span className="identity-label">{t("header.user")}</span>
              <span className="identity-value" data-testid="whoami-actor">{who.actor}</span>
            </span>
            <span className="identity-item">
              <span className="identity-label">{t("header.project")}</span>
              <span className="identity-value" data-testid="whoami-project">{who.project}</span>
            </span>
            <span className="identity-item">
              <span className="identity-label">{t("header.role")}</span>
              <span className="identity-value" data-testid="whoami-role">{roleLabel(t, who.role)}</span>
            </span>
            {who.site_admin ? <span className="badge badge-accent">{t("header.siteAdmin")}</span> : null}
          </div>
          <div className="topbar-actions">
            <LanguageSwitch />
            <button type="button" className="btn btn-secondary" onClick={onLogout} data-testid="logout">
              {t("header.logout")}
            </button>
          </div>
        </header>
        <main className="content">
          {children}
        </main>
      </div>
    </div>
  );
}
