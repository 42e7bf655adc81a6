// Networking: the VPCs of a project and what lives in them (subnets, security
// groups, network interfaces, elastic IPs, NAT gateways, port forwards, load
// balancers). Every section is a
// card with a create form, a table and per-row actions; API errors show in the
// section's own banner, next to the form that caused them. The sections live
// in this folder, one file each; what they share is in shared.tsx.
import { useMemo } from "react";
import { api, type List, type Resource } from "../../api";
import { useKindEvents } from "../../events";
import { useI18n } from "../../i18n";
import { ProjectPicker, useProjectScope } from "../../projectScope";
import { ErrorBanner, PageHeader, useLoad, type Loaded } from "../../components/ui";
import { EipSection } from "./ElasticIps";
import { NatSection } from "./NatGateways";
import { LoadBalancerSection } from "./LoadBalancers";
import { InterfaceSection } from "./NetworkInterfaces";
import { PortForwardSection } from "./PortForwards";
import { SecurityGroupSection } from "./SecurityGroups";
import { SubnetSection } from "./Subnets";
import { VpcSection } from "./Vpcs";
import type { Ctx, Lists, Scope } from "./shared";

/** One list of the page, loaded for the scope and reloaded on events of its kind. */
function useNetworkList<T>(path: string, kind: string, scope: Scope, deps: unknown[]): Loaded<List<T>> {
  const loaded = useLoad(() => api.get<List<T>>(path, { query: scope }), deps);
  useKindEvents([kind], loaded.reload);
  return loaded;
}

export function NetworkPage() {
  const { t } = useI18n();
  const ps = useProjectScope("/network");
  const { project, scope, canWrite, deps } = ps;

  const loads: { [K in keyof Lists]: Loaded<List<Lists[K][number]>> } = {
    vpcs: useNetworkList("/v1/vpcs", "vpc", scope, deps),
    subnets: useNetworkList("/v1/subnets", "subnet", scope, deps),
    groups: useNetworkList("/v1/security-groups", "security_group", scope, deps),
    interfaces: useNetworkList("/v1/network-interfaces", "network_interface", scope, deps),
    eips: useNetworkList("/v1/eips", "eip", scope, deps),
    nats: useNetworkList("/v1/nat-gateways", "nat_gateway", scope, deps),
    pfs: useNetworkList("/v1/port-forwards", "port_forward", scope, deps),
    lbs: useNetworkList("/v1/load-balancers", "load_balancer", scope, deps),
  };

  const lists: Lists = {
    vpcs: loads.vpcs.data?.items ?? [],
    subnets: loads.subnets.data?.items ?? [],
    groups: loads.groups.data?.items ?? [],
    interfaces: loads.interfaces.data?.items ?? [],
    eips: loads.eips.data?.items ?? [],
    nats: loads.nats.data?.items ?? [],
    pfs: loads.pfs.data?.items ?? [],
    lbs: loads.lbs.data?.items ?? [],
  };

  const datas = Object.values(loads).map((l) => l.data);
  const names = useMemo(() => {
    const map = new Map<string, string>();
    for (const list of Object.values(lists)) for (const r of list as Resource[]) map.set(r.id, r.name);
    return map;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, datas);

  const reload = {
    vpcs: loads.vpcs.reload,
    subnets: loads.subnets.reload,
    groups: loads.groups.reload,
    interfaces: loads.interfaces.reload,
    eips: loads.eips.reload,
    nats: loads.nats.reload,
    pfs: loads.pfs.reload,
    lbs: loads.lbs.reload,
  };
  const reloadAll = () => Object.values(reload).forEach((r) => r());

  const ctx: Ctx = {
    lists,
    loads,
    name: (id) => (id ? (names.get(id) ?? id) : "—"),
    scope,
    canWrite,
    reload,
  };

  return (
    <div className="page" data-testid="network-page">
      <PageHeader
        title={t("network.title")}
        subtitle={t("network.subtitle")}
        actions={
          <>
            <ProjectPicker scope={ps} label={t("network.project")} testId="network-project" />
            <button type="button" className="btn btn-secondary" onClick={reloadAll} data-testid="network-refresh">
              {t("common.refresh")}
            </button>
          </>
        }
      />
      <ErrorBanner error={ps.projectsError} />
      {!canWrite ? <p className="muted">{t("network.readOnly")}</p> : null}

      {/* Keyed by project: switching projects starts every form afresh. */}
      <VpcSection key={`vpc-${project}`} ctx={ctx} />
      <SubnetSection key={`subnet-${project}`} ctx={ctx} />
      <SecurityGroupSection key={`sg-${project}`} ctx={ctx} />
      <InterfaceSection key={`eni-${project}`} ctx={ctx} />
      <EipSection key={`eip-${project}`} ctx={ctx} />
      <NatSection key={`nat-${project}`} ctx={ctx} />
      <PortForwardSection key={`pf-${project}`} ctx={ctx} />
      <LoadBalancerSection key={`lb-${project}`} ctx={ctx} />
    </div>
  );
}
