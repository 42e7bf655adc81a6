import { useState, type FormEvent } from "react";
import { api, seg, type ProjectResource } from "../api";
import { useI18n } from "../i18n";
import { Card, ErrorBanner } from "../components/ui";

/** Quota keys the console shows first, in this order (docs/api.md, projects); others follow. */
const AMOUNT_KEYS = ["vcpus", "memory_mib", "volume_mib", "image_mib", "object_mib"];

/** The project's quota keys: amounts first, then kinds' plurals, both as the spec and usage have them. */
function quotaKeys(p: ProjectResource): string[] {
  const keys = new Set<string>([...Object.keys(p.spec?.quotas ?? {}), ...AMOUNT_KEYS]);
  const rest = [...keys].filter((k) => !AMOUNT_KEYS.includes(k)).sort();
  return [...AMOUNT_KEYS, ...rest];
}

function usageOf(p: ProjectResource): Record<string, number> {
  const u = (p.status as { usage?: Record<string, number> } | undefined)?.usage;
  return u ?? {};
}

/**
 * A project's settings: its quotas next to what it uses, its approved function domains and its
 * host-path grants. Site admins edit them (one PATCH; a cleared quota becomes unlimited); others
 * see them read-only.
 */
export function ProjectSettings({ project, canEdit, onSaved, onClose }: {
  project: ProjectResource;
  canEdit: boolean;
  onSaved: () => void;
  onClose: () => void;
}) {
  const { t } = useI18n();
  const spec = project.spec as {
    quotas?: Record<string, number>;
    function_domains?: string[];
    host_paths?: Record<string, string>;
  };
  const keys = quotaKeys(project);
  const usage = usageOf(project);
  const [quotas, setQuotas] = useState<Record<string, string>>(
    Object.fromEntries(keys.map((k) => [k, spec.quotas?.[k] === undefined ? "" : String(spec.quotas[k])])),
  );
  const [domains, setDomains] = useState((spec.function_domains ?? []).join(", "));
  const [paths, setPaths] = useState(
    Object.entries(spec.host_paths ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join("\n"),
  );
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const save = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    // A merge patch (RFC 7386): null removes a quota or a grant.
    const q: Record<string, number | null> = {};
    for (const k of keys) {
      const v = quotas[k].trim();
      if (v === "") {
        if (spec.quotas?.[k] !== undefined) q[k] = null;
      } else if (/^\d+$/.test(v)) {
        q[k] = Number(v);
      } else {
        setError(new Error(t("projects.badQuota", { key: k, value: v })));
        return;
      }
    }
    const grants: Record<string, string | null> = {};
    for (const old of Object.keys(spec.host_paths ?? {})) grants[old] = null;
    for (const line of paths.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const [name, access = "ro"] = line.split("=").map((x) => x.trim());
      grants[name] = access;
    }
    const function_domains = domains.split(/[\s,]+/).filter(Boolean);
    setBusy(true);
    try {
      await api.patch(`/v1/projects/${seg(project.name)}`, { spec: { quotas: q, function_domains, host_paths: grants } });
      onSaved();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Card
      title={t("projects.settingsOf", { name: project.name })}
      testId="project-settings"
      actions={
        <button type="button" className="btn btn-secondary" onClick={onClose} data-testid="project-settings-close">
          {t("common.cancel")}
        </button>
      }
    >
      <ErrorBanner error={error} onDismiss={() => setError(null)} />
      <form onSubmit={save} data-testid="project-settings-form">
        <table className="table">
          <thead>
            <tr>
              <th>{t("projects.quota")}</th>
              <th>{t("projects.used")}</th>
              <th>{t("projects.limit")}</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((k) => (
              <tr key={k} data-testid="quota-row" data-key={k}>
                <td>
                  <code>{k}</code>
                </td>
                <td data-testid={`quota-used-${k}`}>{usage[k] ?? 0}</td>
                <td>
                  <input
                    value={quotas[k]}
                    disabled={!canEdit}
                    inputMode="numeric"
                    placeholder={t("projects.unlimited")}
                    onChange={(e) => setQuotas({ ...quotas, [k]: e.target.value })}
                    data-testid={`quota-${k}`}
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        <label className="field field-grow">
          <span>{t("projects.functionDomains")}</span>
          <input value={domains} disabled={!canEdit} onChange={(e) => setDomains(e.target.value)} placeholder="apps.example.com" data-testid="project-domains" />
        </label>
        <label className="field field-grow">
          <span>{t("projects.hostPaths")}</span>
          <textarea value={paths} disabled={!canEdit} rows={3} onChange={(e) => setPaths(e.target.value)} placeholder="data=ro" data-testid="project-host-paths" />
        </label>
        {canEdit ? (
          <button type="submit" className="btn btn-primary" disabled={busy} data-testid="project-settings-save">
            {busy ? t("projects.saving") : t("projects.save")}
          </button>
        ) : null}
      </form>
    </Card>
  );
}
