// Subnets: a CIDR inside one VPC.
import { useState } from "react";
import { formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { CreateButton, Field, Mono, NameField, ResourceRow, ResourceSection, ParentSelect, pick, useResource, type Ctx } from "./shared";

/** A placeholder inside the VPC: "10.0.0.0/16" → "10.0.1.0/24". */
export function subnetHint(vpcCidr: string | undefined): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(vpcCidr ?? "");
  if (!m) return "10.0.1.0/24";
  const prefix = Number(m[5]);
  if (prefix <= 16) return `${m[1]}.${m[2]}.1.0/24`;
  if (prefix < 24) return `${m[1]}.${m[2]}.${m[3]}.0/24`;
  return `${m[1]}.${m[2]}.${m[3]}.${m[4]}/${Math.min(prefix + 1, 28)}`;
}

export function SubnetSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const res = useResource(ctx, "subnets", "/v1/subnets");
  const { m } = res;
  const [name, setName] = useState("");
  const [vpcChoice, setVpc] = useState("");
  const [cidr, setCidr] = useState("");
  const vpc = pick(vpcChoice, ctx.lists.vpcs);

  const create = res.onCreate(
    () => ({ name: name.trim(), spec: { vpc, cidr: cidr.trim() } }),
    () => {
      setName("");
      setCidr("");
    },
  );

  return (
    <ResourceSection
      kind="subnet"
      title={t("network.subnets")}
      res={res}
      ctx={ctx}
      head={[t("common.name"), t("network.vpc"), t("network.cidr"), t("common.created")]}
      form={
        <form className="form-row" onSubmit={create} data-testid="subnet-form">
          <NameField value={name} onChange={setName} placeholder="web" testId="subnet-name" />
          <ParentSelect ctx={ctx} of="vpc" value={vpc} onChange={setVpc} testId="subnet-vpc" />
          <Field label={t("network.cidr")}>
            <input
              value={cidr}
              onChange={(e) => setCidr(e.target.value)}
              required
              placeholder={subnetHint(ctx.lists.vpcs.find((v) => v.id === vpc)?.spec?.cidr)}
              data-testid="subnet-cidr"
            />
          </Field>
          <CreateButton busy={m.busy} disabled={!vpc} testId="subnet-create" />
        </form>
      }
    >
      {res.items.map((s) => (
        <ResourceRow key={s.id} kind="subnet" item={s} ctx={ctx} busy={m.busy} onDelete={() => res.remove(s)}>
          <td className="name-cell">{s.name}</td>
          <td>{ctx.name(s.spec?.vpc)}</td>
          <td>
            <Mono>{s.spec?.cidr}</Mono>
          </td>
          <td className="nowrap">{formatTime(s.created_at, lang)}</td>
        </ResourceRow>
      ))}
    </ResourceSection>
  );
}
