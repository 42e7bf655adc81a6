// Security groups: created empty in a VPC; their ingress rules are edited in
// an expandable sub-row (see SecurityGroupRules.tsx).
import { useState } from "react";
import { useI18n } from "../../i18n";
import { SecurityGroupRules } from "./SecurityGroupRules";
import {
  CreateButton,
  NameField,
  ResourceRow,
  ResourceSection,
  ParentSelect,
  columnCount,
  pick,
  toggled,
  useResource,
  type Ctx,
} from "./shared";

export function SecurityGroupSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const res = useResource(ctx, "groups", "/v1/security-groups");
  const { m, items } = res;
  const [name, setName] = useState("");
  const [vpcChoice, setVpc] = useState("");
  const [open, setOpen] = useState<ReadonlySet<string>>(new Set());
  const vpc = pick(vpcChoice, ctx.lists.vpcs);

  const create = res.onCreate(() => ({ name: name.trim(), spec: { vpc, ingress: [] } }), () => setName(""));

  const head = [t("common.name"), t("network.vpc"), t("network.rules"), ""];
  const cols = columnCount(head, ctx.canWrite);
  return (
    <ResourceSection
      kind="sg"
      title={t("network.securityGroups")}
      res={res}
      ctx={ctx}
      head={head}
      note={t("network.sgNote")}
      form={
        <form className="form-row" onSubmit={create} data-testid="sg-form">
          <NameField value={name} onChange={setName} placeholder="web-in" testId="sg-name" />
          <ParentSelect ctx={ctx} of="vpc" value={vpc} onChange={setVpc} testId="sg-vpc" />
          <CreateButton busy={m.busy} disabled={!vpc} testId="sg-create" />
        </form>
      }
    >
      {items.flatMap((g) => {
        const expanded = open.has(g.id);
        const rules = g.spec?.ingress ?? [];
        const rows = [
          <ResourceRow
            key={g.id}
            kind="sg"
            item={g}
            ctx={ctx}
            busy={m.busy}
            onDelete={() => res.remove(g)}
            className={expanded ? "net-open" : undefined}
          >
            <td className="name-cell">{g.name}</td>
            <td>{ctx.name(g.spec?.vpc)}</td>
            <td data-testid="sg-rule-count">{rules.length}</td>
            <td>
              <button
                type="button"
                className="btn btn-ghost btn-small"
                aria-expanded={expanded}
                onClick={() => setOpen((prev) => toggled(prev, g.id))}
                data-testid="sg-rules-toggle"
              >
                {expanded ? "▾ " : "▸ "}
                {ctx.canWrite ? t("network.editRules") : t("network.showRules")}
              </button>
            </td>
          </ResourceRow>,
        ];
        if (expanded) {
          rows.push(
            <tr key={`${g.id}-rules`} className="net-subrow">
              <td colSpan={cols}>
                {/* Remounted when the stored group changes, so the draft starts from it. */}
                <SecurityGroupRules
                  key={`${g.id}:${g.generation ?? 0}`}
                  group={g}
                  peers={items.filter((o) => o.spec?.vpc === g.spec?.vpc)}
                  ctx={ctx}
                />
              </td>
            </tr>,
          );
        }
        return rows;
      })}
    </ResourceSection>
  );
}
