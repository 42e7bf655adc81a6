// VPCs: name and CIDR.
import { useState } from "react";
import { formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { PhaseBadge } from "../../components/ui";
import { CreateButton, Field, Mono, NameField, ResourceRow, ResourceSection, useResource, type Ctx } from "./shared";

export function VpcSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const res = useResource(ctx, "vpcs", "/v1/vpcs");
  const { m } = res;
  const [name, setName] = useState("");
  const [cidr, setCidr] = useState("");

  const create = res.onCreate(
    () => ({ name: name.trim(), spec: { cidr: cidr.trim() } }),
    () => {
      setName("");
      setCidr("");
    },
  );

  return (
    <ResourceSection
      kind="vpc"
      title={t("network.vpcs")}
      res={res}
      ctx={ctx}
      head={[t("common.name"), t("network.cidr"), t("common.phase"), t("common.created")]}
      form={
        <form className="form-row" onSubmit={create} data-testid="vpc-form">
          <NameField value={name} onChange={setName} placeholder="prod" testId="vpc-name" />
          <Field label={t("network.cidr")}>
            <input
              value={cidr}
              onChange={(e) => setCidr(e.target.value)}
              required
              placeholder="10.0.0.0/16"
              data-testid="vpc-cidr"
            />
          </Field>
          <CreateButton busy={m.busy} testId="vpc-create" />
        </form>
      }
    >
      {res.items.map((vpc) => (
        <ResourceRow key={vpc.id} kind="vpc" item={vpc} ctx={ctx} busy={m.busy} onDelete={() => res.remove(vpc)}>
          <td className="name-cell">{vpc.name}</td>
          <td>
            <Mono>{vpc.spec?.cidr}</Mono>
          </td>
          <td>
            <PhaseBadge phase={vpc.status?.phase} testId="vpc-phase" />
          </td>
          <td className="nowrap">{formatTime(vpc.created_at, lang)}</td>
        </ResourceRow>
      ))}
    </ResourceSection>
  );
}
