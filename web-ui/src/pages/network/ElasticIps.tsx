// Elastic IPs: allocated by name, then associated with a free interface.
import { useState } from "react";
import type { EipResource, NetworkInterfaceResource } from "../../api";
import { useI18n } from "../../i18n";
import { CreateButton, Mono, NameField, ResourceRow, ResourceSection, pick, useResource, type Ctx } from "./shared";

export function EipSection({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const res = useResource(ctx, "eips", "/v1/eips");
  const { m, items } = res;
  const [name, setName] = useState("");

  // An interface takes one EIP: offer those that have none.
  const taken = new Set(items.map((e) => e.spec?.network_interface).filter((x): x is string => !!x));
  const free = ctx.lists.interfaces.filter((n) => !taken.has(n.id));

  const create = res.onCreate(() => ({ name: name.trim() }), () => setName(""));

  const associate = (eip: EipResource, eni: string | null) => void res.patch(eip, { spec: { network_interface: eni } });

  return (
    <ResourceSection
      kind="eip"
      title={t("network.eips")}
      res={res}
      ctx={ctx}
      head={[t("common.name"), t("network.publicIp"), t("network.interface"), ctx.canWrite && t("network.association")]}
      note={t("network.eipNote")}
      form={
        <form className="form-row" onSubmit={create} data-testid="eip-form">
          <NameField value={name} onChange={setName} placeholder="web-public" testId="eip-name" />
          <CreateButton
            busy={m.busy}
            testId="eip-create"
            label={t("network.allocate")}
            busyLabel={t("network.allocating")}
          />
        </form>
      }
    >
      {items.map((eip) => (
        <EipRow
          key={eip.id}
          eip={eip}
          free={free}
          ctx={ctx}
          busy={m.busy}
          onAssociate={associate}
          onRemove={() => res.remove(eip)}
        />
      ))}
    </ResourceSection>
  );
}

function EipRow({ eip, free, ctx, busy, onAssociate, onRemove }: {
  eip: EipResource;
  free: NetworkInterfaceResource[];
  ctx: Ctx;
  busy: boolean;
  onAssociate: (eip: EipResource, eni: string | null) => void;
  onRemove: () => void;
}) {
  const { t } = useI18n();
  const [choice, setChoice] = useState("");
  const eni = eip.spec?.network_interface ?? null;
  const target = pick(choice, free);
  return (
    <ResourceRow kind="eip" item={eip} ctx={ctx} busy={busy} onDelete={onRemove}>
      <td className="name-cell">{eip.name}</td>
      <td>
        <Mono>{eip.spec?.public_ip}</Mono>
      </td>
      <td data-testid="eip-interface">{eni ? ctx.name(eni) : <span className="muted">—</span>}</td>
      {ctx.canWrite ? (
        <td>
          {eni ? (
            <button type="button" className="btn btn-secondary btn-small" disabled={busy}
              onClick={() => onAssociate(eip, null)} data-testid="eip-disassociate">
              {t("network.disassociate")}
            </button>
          ) : (
            <span className="net-inline">
              <select value={target} onChange={(e) => setChoice(e.target.value)} disabled={free.length === 0}
                aria-label={t("network.interface")} data-testid="eip-target">
                {free.length === 0 ? <option value="">{t("network.noFreeInterface")}</option> : null}
                {free.map((n) => (
                  <option key={n.id} value={n.id}>
                    {n.name}
                  </option>
                ))}
              </select>
              <button type="button" className="btn btn-secondary btn-small" disabled={busy || !target}
                onClick={() => onAssociate(eip, target)} data-testid="eip-associate">
                {t("network.associate")}
              </button>
            </span>
          )}
        </td>
      ) : null}
    </ResourceRow>
  );
}
