// NAT gateways: egress for a subnet, through a free elastic IP or the uplink.
import { useState } from "react";
import { formatTime } from "../../format";
import { useI18n } from "../../i18n";
import {
  CreateButton,
  Field,
  NameField,
  ResourceRow,
  ResourceSection,
  ParentSelect,
  pick,
  useResource,
  type Ctx,
} from "./shared";

export function NatSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const res = useResource(ctx, "nats", "/v1/nat-gateways");
  const { m, items } = res;
  const [name, setName] = useState("");
  const [subnetChoice, setSubnet] = useState("");
  const [eip, setEip] = useState("");
  const subnet = pick(subnetChoice, ctx.lists.subnets);

  // A NAT gateway needs an EIP that is neither associated nor used by another gateway.
  const usedByNat = new Set(items.map((n) => n.spec?.eip).filter((x): x is string => !!x));
  const freeEips = ctx.lists.eips.filter((e) => !e.spec?.network_interface && !usedByNat.has(e.id));
  const eipValue = freeEips.some((e) => e.id === eip) ? eip : "";

  const create = res.onCreate(
    () => {
      const spec: Record<string, unknown> = { subnet };
      if (eipValue) spec.eip = eipValue;
      return { name: name.trim(), spec };
    },
    () => {
      setName("");
      setEip("");
    },
    // The gateway takes its EIP.
    () => {
      ctx.reload.nats();
      ctx.reload.eips();
    },
  );

  const eipLabel = (id: string) => {
    const e = ctx.lists.eips.find((x) => x.id === id);
    return e ? `${e.name}${e.spec?.public_ip ? ` (${e.spec.public_ip})` : ""}` : id;
  };

  return (
    <ResourceSection
      kind="natgw"
      title={t("network.natGateways")}
      res={res}
      ctx={ctx}
      head={[t("common.name"), t("network.subnet"), t("network.eip"), t("common.created")]}
      note={t("network.natNote")}
      form={
        <form className="form-row" onSubmit={create} data-testid="natgw-form">
          <NameField value={name} onChange={setName} placeholder="web-egress" testId="natgw-name" />
          <ParentSelect ctx={ctx} of="subnet" value={subnet} onChange={setSubnet} testId="natgw-subnet" />
          <Field label={t("network.eip")}>
            <select value={eipValue} onChange={(e) => setEip(e.target.value)} data-testid="natgw-eip">
              <option value="">{t("network.uplink")}</option>
              {freeEips.map((e) => (
                <option key={e.id} value={e.id}>
                  {eipLabel(e.id)}
                </option>
              ))}
            </select>
          </Field>
          <CreateButton busy={m.busy} disabled={!subnet} testId="natgw-create" />
        </form>
      }
    >
      {items.map((n) => (
        <ResourceRow key={n.id} kind="natgw" item={n} ctx={ctx} busy={m.busy} onDelete={() => res.remove(n)}>
          <td className="name-cell">{n.name}</td>
          <td>{ctx.name(n.spec?.subnet)}</td>
          <td>{n.spec?.eip ? eipLabel(n.spec.eip) : <span className="muted">{t("network.uplink")}</span>}</td>
          <td className="nowrap">{formatTime(n.created_at, lang)}</td>
        </ResourceRow>
      ))}
    </ResourceSection>
  );
}
