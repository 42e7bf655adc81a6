// Port forwards: a public port of the uplink address (or of a free elastic IP)
// to a port of a network interface.
import { useState } from "react";
import type { PortForwardResource } from "../../api";
import { formatTime } from "../../format";
import { useI18n } from "../../i18n";
import { CreateButton, Field, Mono, NameField, ResourceRow, ResourceSection, listenerEips, pick, useResource, type Ctx } from "./shared";

export function PortForwardSection({ ctx }: { ctx: Ctx }) {
  const { t, lang } = useI18n();
  const res = useResource(ctx, "pfs", "/v1/port-forwards");
  const { m, items } = res;
  const [name, setName] = useState("");
  const [protocol, setProtocol] = useState("tcp");
  const [publicPort, setPublicPort] = useState("");
  const [eip, setEip] = useState("");
  const [eniChoice, setEni] = useState("");
  const [privatePort, setPrivatePort] = useState("");
  const eni = pick(eniChoice, ctx.lists.interfaces);

  const freeEips = listenerEips(ctx);
  const eipValue = freeEips.some((e) => e.id === eip) ? eip : "";
  const eipIp = (id: string | null | undefined) => ctx.lists.eips.find((e) => e.id === id)?.spec?.public_ip ?? ctx.name(id);
  const publicIp = (f: PortForwardResource) => (f.spec?.eip ? eipIp(f.spec.eip) : t("network.uplink"));

  const create = res.onCreate(
    () => {
      const spec: Record<string, unknown> = {
        protocol,
        public_port: Number(publicPort),
        network_interface: eni,
        private_port: Number(privatePort || publicPort),
      };
      if (eipValue) spec.eip = eipValue;
      return { name: name.trim(), spec };
    },
    () => {
      setName("");
      setPublicPort("");
      setPrivatePort("");
    },
  );

  return (
    <ResourceSection
      kind="pf"
      title={t("network.portForwards")}
      res={res}
      ctx={ctx}
      head={[t("common.name"), t("network.protocol"), t("network.public"), t("network.target"), t("common.created")]}
      note={t("network.pfNote")}
      form={
        <form className="form-row" onSubmit={create} data-testid="pf-form">
          <NameField value={name} onChange={setName} placeholder="ssh" testId="pf-name" />
          <Field label={t("network.protocol")}>
            <select value={protocol} onChange={(e) => setProtocol(e.target.value)} data-testid="pf-protocol">
              <option value="tcp">TCP</option>
              <option value="udp">UDP</option>
            </select>
          </Field>
          <Field label={t("network.eip")}>
            <select value={eipValue} onChange={(e) => setEip(e.target.value)} data-testid="pf-eip">
              <option value="">{t("network.uplink")}</option>
              {freeEips.map((e) => (
                <option key={e.id} value={e.id}>
                  {e.name} ({e.spec?.public_ip})
                </option>
              ))}
            </select>
          </Field>
          <Field label={t("network.publicPort")}>
            <input value={publicPort} onChange={(e) => setPublicPort(e.target.value)} required inputMode="numeric" placeholder="12222" data-testid="pf-public-port" />
          </Field>
          <Field label={t("network.interface")}>
            <select value={eni} onChange={(e) => setEni(e.target.value)} required data-testid="pf-interface">
              {ctx.lists.interfaces.length === 0 ? <option value="">{t("network.noInterface")}</option> : null}
              {ctx.lists.interfaces.map((n) => (
                <option key={n.id} value={n.id}>
                  {n.name} ({n.spec?.private_ip})
                </option>
              ))}
            </select>
          </Field>
          <Field label={t("network.privatePort")}>
            <input value={privatePort} onChange={(e) => setPrivatePort(e.target.value)} inputMode="numeric" placeholder="22" data-testid="pf-private-port" />
          </Field>
          <CreateButton busy={m.busy} disabled={!eni} testId="pf-create" />
        </form>
      }
    >
      {items.map((f) => (
        <ResourceRow key={f.id} kind="pf" item={f} ctx={ctx} busy={m.busy} onDelete={() => res.remove(f)}>
          <td className="name-cell">{f.name}</td>
          <td>{(f.spec?.protocol ?? "").toUpperCase()}</td>
          <td>
            <Mono>{`${publicIp(f)}:${f.spec?.public_port ?? ""}`}</Mono>
          </td>
          <td>
            <Mono>{`${ctx.name(f.spec?.network_interface)}:${f.spec?.private_port ?? ""}`}</Mono>
          </td>
          <td className="nowrap">{formatTime(f.created_at, lang)}</td>
        </ResourceRow>
      ))}
    </ResourceSection>
  );
}
