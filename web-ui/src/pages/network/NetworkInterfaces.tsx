// Network interfaces: an address in a subnet, with security groups of its VPC.
import { useState } from "react";
import { useI18n } from "../../i18n";
import { PhaseBadge } from "../../components/ui";
import {
  CreateButton,
  Field,
  Mono,
  NameField,
  ResourceRow,
  ResourceSection,
  ParentSelect,
  pick,
  toggled,
  useResource,
  type Ctx,
} from "./shared";

export function InterfaceSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const res = useResource(ctx, "interfaces", "/v1/network-interfaces");
  const { m } = res;
  const [name, setName] = useState("");
  const [subnetChoice, setSubnet] = useState("");
  const [ip, setIp] = useState("");
  const [chosen, setChosen] = useState<ReadonlySet<string>>(new Set());
  const subnet = pick(subnetChoice, ctx.lists.subnets);
  const subnetVpc = ctx.lists.subnets.find((s) => s.id === subnet)?.spec?.vpc;
  const offered = ctx.lists.groups.filter((g) => subnetVpc && g.spec?.vpc === subnetVpc);
  // Only groups of the chosen subnet's VPC are sent.
  const selected = offered.filter((g) => chosen.has(g.id)).map((g) => g.id);

  const create = res.onCreate(
    () => {
      const spec: Record<string, unknown> = { subnet, security_groups: selected };
      if (ip.trim()) spec.private_ip = ip.trim();
      return { name: name.trim(), spec };
    },
    () => {
      setName("");
      setIp("");
      setChosen(new Set());
    },
  );

  // Deleting an interface also frees its elastic IP.
  const afterRemove = () => {
    ctx.reload.interfaces();
    ctx.reload.eips();
  };

  return (
    <ResourceSection
      kind="eni"
      title={t("network.interfaces")}
      res={res}
      ctx={ctx}
      head={[t("common.name"), t("network.subnet"), t("network.privateIp"), t("network.securityGroups"), t("common.phase")]}
      form={
        <form className="net-form-stack" onSubmit={create} data-testid="eni-form">
          <div className="form-row">
            <NameField value={name} onChange={setName} placeholder="web-1" testId="eni-name" />
            <ParentSelect
              ctx={ctx}
              of="subnet"
              value={subnet}
              onChange={(id) => {
                setSubnet(id);
                setChosen(new Set());
              }}
              testId="eni-subnet"
            />
            <Field label={t("network.privateIp")}>
              <input
                value={ip}
                onChange={(e) => setIp(e.target.value)}
                placeholder={t("network.automatic")}
                size={16}
                data-testid="eni-ip"
              />
            </Field>
            <CreateButton busy={m.busy} disabled={!subnet} testId="eni-create" />
          </div>
          <fieldset className="net-checks" data-testid="eni-groups">
            <legend>{t("network.securityGroups")}</legend>
            {offered.length === 0 ? (
              <span className="muted small">{subnet ? t("network.noGroupsInVpc") : t("network.pickSubnet")}</span>
            ) : (
              offered.map((g) => (
                <label key={g.id} className="net-check">
                  <input
                    type="checkbox"
                    checked={chosen.has(g.id)}
                    onChange={() => setChosen((prev) => toggled(prev, g.id))}
                    value={g.id}
                    data-testid="eni-group"
                    data-name={g.name}
                  />
                  {g.name}
                </label>
              ))
            )}
          </fieldset>
        </form>
      }
    >
      {res.items.map((n) => {
        const gs = n.spec?.security_groups ?? [];
        return (
          <ResourceRow key={n.id} kind="eni" item={n} ctx={ctx} busy={m.busy} onDelete={() => res.remove(n, afterRemove)}>
            <td className="name-cell">{n.name}</td>
            <td>{ctx.name(n.spec?.subnet)}</td>
            <td>
              <Mono>{n.spec?.private_ip ?? (typeof n.status?.private_ip === "string" ? n.status.private_ip : "")}</Mono>
            </td>
            <td>{gs.length ? gs.map((g) => ctx.name(g)).join(", ") : <span className="muted">{t("common.none")}</span>}</td>
            <td>
              <PhaseBadge phase={n.status?.phase} />
            </td>
          </ResourceRow>
        );
      })}
    </ResourceSection>
  );
}
