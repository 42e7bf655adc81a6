// The create form of an instance: name, VM image, vCPUs, memory, subnet,
// security groups (of the subnet's VPC), an optional private IP, data volumes
// (in order vdb, vdc, …, each optionally read-only), restart policy and stop
// timeout. An error that names a field (the API's 422 `error.field`, e.g.
// `spec.memory_mib` or `spec.volumes[1].volume`) is shown under that field;
// any other error goes to the banner.
import { useState, type FormEvent, type ReactNode } from "react";
import { api, type RestartPolicy } from "../../api";
import { useI18n, type MessageKey } from "../../i18n";
import { ErrorBanner } from "../../components/ui";
import { CreateButton, Field, pick, useMutation } from "../network/shared";
import {
  RESTART_POLICIES,
  createSpec,
  errorField,
  fieldMatches,
  type Ctx,
  type InstanceResource,
  type InstanceVolume,
} from "./shared";

export const POLICY_LABEL: Record<RestartPolicy, MessageKey> = {
  never: "instances.policyNever",
  "on-failure": "instances.policyOnFailure",
  always: "instances.policyAlways",
};

/** The fields of the form an error can name; an error naming another goes to the banner. */
const FORM_FIELDS = [
  "name",
  "spec.image",
  "spec.vcpus",
  "spec.memory_mib",
  "spec.subnet",
  "spec.security_groups",
  "spec.private_ip",
  "spec.volumes",
  "spec.restart_policy",
  "spec.stop_timeout_seconds",
];

/** The message of `error` when it names `field` (or a part of it), shown under the field. */
function FieldMessage({ error, field }: { error: unknown; field: string }) {
  const named = errorField(error);
  if (!fieldMatches(named, field) || !(error instanceof Error)) return null;
  return (
    <span className="inst-field-error" role="alert" data-testid="instance-field-error" data-field={named}>
      {error.message}
    </span>
  );
}

/** A labelled field whose control is marked invalid, with the error under it, when the error names `field`. */
function SpecField({ label, field, error, grow, children }: {
  label: string;
  field: string;
  error: unknown;
  grow?: boolean;
  children: ReactNode;
}) {
  const bad = fieldMatches(errorField(error), field);
  return (
    <div className={`inst-field ${grow ? "field-grow" : ""} ${bad ? "inst-field-bad" : ""}`} data-field={field}>
      <Field label={label} grow>
        {children}
      </Field>
      <FieldMessage error={error} field={field} />
    </div>
  );
}

export function CreateForm({ ctx }: { ctx: Ctx }) {
  const { t } = useI18n();
  const m = useMutation();
  const [name, setName] = useState("");
  const [imageChoice, setImage] = useState("");
  const [vcpus, setVcpus] = useState("1");
  const [memory, setMemory] = useState("256");
  const [subnetChoice, setSubnet] = useState("");
  const [groups, setGroups] = useState<string[]>([]);
  const [privateIp, setPrivateIp] = useState("");
  const [volumes, setVolumes] = useState<InstanceVolume[]>([]);
  const [addVolume, setAddVolume] = useState("");
  const [policy, setPolicy] = useState<RestartPolicy>("on-failure");
  const [stopTimeout, setStopTimeout] = useState("");

  const ready = ctx.images.filter((i) => i.status?.phase === "Ready");
  const image = pick(imageChoice, ready);
  const subnet = pick(subnetChoice, ctx.subnets);
  const vpc = ctx.subnets.find((s) => s.id === subnet)?.spec?.vpc;
  // Security groups belong to a VPC: offer those of the subnet's.
  const vpcGroups = ctx.groups.filter((g) => g.spec?.vpc === vpc);
  const chosenGroups = groups.filter((g) => vpcGroups.some((x) => x.id === g));
  const freeVolumes = ctx.volumes.filter((v) => !volumes.some((x) => x.volume === v.id));
  const volumeToAdd = pick(addVolume, freeVolumes);
  const volumeName = (id: string) => ctx.volumes.find((v) => v.id === id)?.name ?? id;

  const err = m.error;
  const inline = FORM_FIELDS.some((f) => fieldMatches(errorField(err), f));

  const toggleGroup = (id: string) =>
    setGroups((prev) => (prev.includes(id) ? prev.filter((g) => g !== id) : [...prev, id]));

  const create = async (e: FormEvent) => {
    e.preventDefault();
    let spec;
    try {
      spec = createSpec(
        { image, vcpus, memory, subnet, groups: chosenGroups, privateIp, volumes, restartPolicy: policy, stopTimeout },
        t,
      );
    } catch (error) {
      m.setError(error);
      return;
    }
    let made: InstanceResource | undefined;
    const ok = await m.run(async () => {
      made = await api.post<InstanceResource>("/v1/instances", { name: name.trim(), spec }, { query: ctx.scope });
    }, ctx.reload);
    if (!ok || !made) return;
    ctx.notify(t("instances.created", { name: made.name }));
    setName("");
    setPrivateIp("");
    setVolumes([]);
  };

  return (
    <div className="inst-create">
      {inline ? null : <ErrorBanner error={err} onDismiss={() => m.setError(null)} />}
      <form className="net-form-stack" onSubmit={create} data-testid="instance-form" noValidate>
        <div className="form-row inst-form-row">
          <SpecField label={t("common.name")} field="name" error={err} grow>
            <NameInput value={name} onChange={setName} />
          </SpecField>
          <SpecField label={t("instances.image")} field="spec.image" error={err}>
            <select value={image} onChange={(e) => setImage(e.target.value)} data-testid="instance-image">
              {ready.length === 0 ? <option value="">{t("instances.noImage")}</option> : null}
              {ready.map((i) => (
                <option key={i.id} value={i.id}>
                  {i.name}
                </option>
              ))}
            </select>
          </SpecField>
          <SpecField label={t("instances.vcpus")} field="spec.vcpus" error={err}>
            <input value={vcpus} onChange={(e) => setVcpus(e.target.value)} inputMode="numeric" size={4}
              data-testid="instance-vcpus" />
          </SpecField>
          <SpecField label={t("instances.memory")} field="spec.memory_mib" error={err}>
            <input value={memory} onChange={(e) => setMemory(e.target.value)} inputMode="numeric" size={7}
              data-testid="instance-memory" />
          </SpecField>
          <SpecField label={t("instances.restartPolicy")} field="spec.restart_policy" error={err}>
            <select value={policy} onChange={(e) => setPolicy(e.target.value as RestartPolicy)}
              data-testid="instance-restart-policy">
              {RESTART_POLICIES.map((p) => (
                <option key={p} value={p}>
                  {t(POLICY_LABEL[p])}
                </option>
              ))}
            </select>
          </SpecField>
          <SpecField label={t("instances.stopTimeout")} field="spec.stop_timeout_seconds" error={err}>
            <input value={stopTimeout} onChange={(e) => setStopTimeout(e.target.value)} inputMode="numeric" size={5}
              placeholder="30" data-testid="instance-stop-timeout" />
          </SpecField>
        </div>
        <div className="form-row inst-form-row">
          <SpecField label={t("instances.subnet")} field="spec.subnet" error={err}>
            <select value={subnet} onChange={(e) => setSubnet(e.target.value)} data-testid="instance-subnet">
              {ctx.subnets.length === 0 ? <option value="">{t("instances.noSubnet")}</option> : null}
              {ctx.subnets.map((s) => (
                <option key={s.id} value={s.id}>
                  {`${s.name} (${s.spec?.cidr ?? ""})`}
                </option>
              ))}
            </select>
          </SpecField>
          <SpecField label={t("instances.privateIp")} field="spec.private_ip" error={err}>
            <input value={privateIp} onChange={(e) => setPrivateIp(e.target.value)} size={14}
              placeholder={t("instances.fromSubnet")} className="net-mono" data-testid="instance-private-ip" />
          </SpecField>
          <SpecField label={t("instances.securityGroups")} field="spec.security_groups" error={err} grow>
            <span className="inst-checks" data-testid="instance-groups">
              {vpcGroups.length === 0 ? <span className="muted small">{t("instances.noGroups")}</span> : null}
              {vpcGroups.map((g) => (
                <label key={g.id} className="inst-check">
                  <input type="checkbox" checked={chosenGroups.includes(g.id)} onChange={() => toggleGroup(g.id)}
                    data-testid="instance-group" data-name={g.name} />
                  {g.name}
                </label>
              ))}
            </span>
          </SpecField>
        </div>
        <div className="form-row inst-form-row">
          <div className="inst-field field-grow" data-field="spec.volumes">
            <Field label={t("instances.volumes")} grow>
              <span className="inst-volumes" data-testid="instance-volumes">
                {volumes.length === 0 ? <span className="muted small">{t("instances.noVolumes")}</span> : null}
                {volumes.map((v, i) => (
                  <span key={v.volume} className={`inst-volume ${fieldMatches(errorField(err), `spec.volumes[${i}]`) ? "inst-field-bad" : ""}`}
                    data-testid="instance-volume" data-name={volumeName(v.volume)}>
                    <code className="net-mono">{`vd${String.fromCharCode(98 + i)}`}</code> {volumeName(v.volume)}
                    <label className="inst-check">
                      <input type="checkbox" checked={!!v.read_only} data-testid="instance-volume-ro"
                        onChange={(e) => setVolumes((prev) => prev.map((x, j) => (j === i ? { ...x, read_only: e.target.checked } : x)))} />
                      {t("instances.volumeReadOnly")}
                    </label>
                    <button type="button" className="btn btn-ghost btn-small" data-testid="instance-volume-remove"
                      onClick={() => setVolumes((prev) => prev.filter((_, j) => j !== i))}>
                      {t("instances.remove")}
                    </button>
                    <FieldMessage error={err} field={`spec.volumes[${i}]`} />
                  </span>
                ))}
              </span>
            </Field>
            {fieldMatches(errorField(err), "spec.volumes") && !/^spec\.volumes\[/.test(errorField(err) ?? "") ? (
              <FieldMessage error={err} field="spec.volumes" />
            ) : null}
          </div>
          <Field label={t("instances.addVolume")}>
            <span className="inst-add-volume">
              <select value={volumeToAdd} onChange={(e) => setAddVolume(e.target.value)} data-testid="instance-volume-pick">
                {freeVolumes.length === 0 ? <option value="">{t("instances.noMoreVolumes")}</option> : null}
                {freeVolumes.map((v) => (
                  <option key={v.id} value={v.id}>
                    {`${v.name} (${v.spec?.size_mib ?? "?"} MiB)`}
                  </option>
                ))}
              </select>
              <button type="button" className="btn btn-secondary btn-small" disabled={!volumeToAdd}
                onClick={() => setVolumes((prev) => [...prev, { volume: volumeToAdd, read_only: false }])}
                data-testid="instance-volume-add">
                {t("instances.attach")}
              </button>
            </span>
          </Field>
          <CreateButton busy={m.busy} disabled={!image || !subnet || !name.trim()} testId="instance-create"
            label={t("instances.create")} busyLabel={t("common.creating")} />
        </div>
      </form>
      <p className="muted small net-note">{t("instances.createNote")}</p>
    </div>
  );
}

/** The name input (the label comes from SpecField). */
function NameInput({ value, onChange }: { value: string; onChange: (v: string) => void }) {
  return (
    <input value={value} onChange={(e) => onChange(e.target.value)} required placeholder="web-1"
      data-testid="instance-name" />
  );
}
