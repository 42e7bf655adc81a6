// The ingress rules of one security group: a draft list edited locally and
// saved as a whole (PATCH).
import { useState, type FormEvent } from "react";
import type { SecurityGroupResource, SgProtocol, SgRule } from "../../api";
import { useI18n } from "../../i18n";
import { ErrorBanner } from "../../components/ui";
import { Field, pick, protocolLabel, useResource, type Ctx } from "./shared";

const PROTOCOLS: SgProtocol[] = ["tcp", "udp", "icmp", "all"];

function sameRules(a: SgRule[], b: SgRule[]): boolean {
  const norm = (r: SgRule) => [r.protocol, r.ports ?? "", r.source_cidr ?? "", r.source_group ?? ""].join("|");
  return a.length === b.length && a.every((r, i) => norm(r) === norm(b[i]));
}

export function SecurityGroupRules({ group, peers, ctx }: {
  group: SecurityGroupResource;
  peers: SecurityGroupResource[];
  ctx: Ctx;
}) {
  const { t } = useI18n();
  const { m, patch } = useResource(ctx, "groups", "/v1/security-groups");
  const saved = group.spec?.ingress ?? [];
  const [draft, setDraft] = useState<SgRule[]>(saved);
  const [protocol, setProtocol] = useState<SgProtocol>("tcp");
  const [ports, setPorts] = useState("");
  const [sourceKind, setSourceKind] = useState<"cidr" | "group">("cidr");
  const [cidr, setCidr] = useState("");
  const [sourceChoice, setSource] = useState("");
  const dirty = !sameRules(draft, saved);
  const hasPorts = protocol === "tcp" || protocol === "udp";
  const source = pick(sourceChoice, peers);

  const add = (e: FormEvent) => {
    e.preventDefault();
    const rule: SgRule = { protocol };
    if (hasPorts && ports.trim()) rule.ports = ports.trim();
    if (sourceKind === "cidr") rule.source_cidr = cidr.trim();
    else rule.source_group = source;
    setDraft((d) => [...d, rule]);
    setPorts("");
    setCidr("");
  };

  const save = () => void patch(group, { spec: { ingress: draft } });

  return (
    <div className="net-rules" data-testid="sg-rules" data-group={group.name}>
      <ErrorBanner error={m.error} onDismiss={() => m.setError(null)} />
      {draft.length === 0 ? (
        <p className="muted small">{t("network.noRules")}</p>
      ) : (
        <table className="table table-compact net-rules-table">
          <thead>
            <tr>
              <th>{t("network.protocol")}</th>
              <th>{t("network.ports")}</th>
              <th>{t("network.source")}</th>
              {ctx.canWrite ? <th className="actions-col" /> : null}
            </tr>
          </thead>
          <tbody>
            {draft.map((r, i) => (
              <tr key={i} data-testid="sg-rule">
                <td>{protocolLabel(t, r.protocol)}</td>
                <td>
                  {r.protocol === "tcp" || r.protocol === "udp" ? (
                    r.ports ? <code className="net-mono">{r.ports}</code> : <span className="muted">{t("network.allPorts")}</span>
                  ) : (
                    <span className="muted">—</span>
                  )}
                </td>
                <td>
                  {r.source_group ? (
                    <span>
                      <span className="muted small">{t("network.sourceGroup")}:</span> {ctx.name(r.source_group)}
                    </span>
                  ) : (
                    <code className="net-mono">{r.source_cidr}</code>
                  )}
                </td>
                {ctx.canWrite ? (
                  <td className="actions-col">
                    <button
                      type="button"
                      className="btn btn-ghost btn-small"
                      onClick={() => setDraft((d) => d.filter((_, j) => j !== i))}
                      data-testid="sg-rule-remove"
                    >
                      {t("network.removeRule")}
                    </button>
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {ctx.canWrite ? (
        <>
          <form className="form-row net-rule-form" onSubmit={add} data-testid="sg-rule-form">
            <Field label={t("network.protocol")}>
              <select value={protocol} onChange={(e) => setProtocol(e.target.value as SgProtocol)} data-testid="sg-rule-protocol">
                {PROTOCOLS.map((p) => (
                  <option key={p} value={p}>
                    {protocolLabel(t, p)}
                  </option>
                ))}
              </select>
            </Field>
            <Field label={t("network.ports")}>
              <input
                value={hasPorts ? ports : ""}
                onChange={(e) => setPorts(e.target.value)}
                disabled={!hasPorts}
                placeholder={hasPorts ? t("network.portsHint") : "—"}
                size={12}
                data-testid="sg-rule-ports"
              />
            </Field>
            <Field label={t("network.source")}>
              <select
                value={sourceKind}
                onChange={(e) => setSourceKind(e.target.value as "cidr" | "group")}
                data-testid="sg-rule-source-kind"
              >
                <option value="cidr">{t("network.sourceCidr")}</option>
                <option value="group">{t("network.sourceGroup")}</option>
              </select>
            </Field>
            {sourceKind === "cidr" ? (
              <Field label={t("network.cidr")}>
                <input
                  value={cidr}
                  onChange={(e) => setCidr(e.target.value)}
                  required
                  placeholder="0.0.0.0/0"
                  size={16}
                  data-testid="sg-rule-source-cidr"
                />
              </Field>
            ) : (
              <Field label={t("network.sourceGroup")}>
                <select value={source} onChange={(e) => setSource(e.target.value)} required data-testid="sg-rule-source-group">
                  {peers.map((p) => (
                    <option key={p.id} value={p.id}>
                      {p.name}
                    </option>
                  ))}
                </select>
              </Field>
            )}
            <button type="submit" className="btn btn-secondary" data-testid="sg-rule-add">
              {t("network.addRule")}
            </button>
          </form>
          <div className="net-rules-actions">
            {dirty ? <span className="badge badge-warn">{t("network.unsaved")}</span> : null}
            <button type="button" className="btn btn-ghost btn-small" disabled={!dirty || m.busy} onClick={() => setDraft(saved)}>
              {t("network.discard")}
            </button>
            <button type="button" className="btn btn-primary btn-small" disabled={!dirty || m.busy} onClick={save} data-testid="sg-rules-save">
              {m.busy ? t("network.saving") : t("network.saveRules")}
            </button>
          </div>
        </>
      ) : null}
    </div>
  );
}
