// A small translation table: every UI string goes through t().
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";

const en = {
  "app.name": "cloudlet",
  "app.subtitle": "Site console",
  "app.loading": "Loading…",

  "nav.overview": "Overview",
  "nav.projects": "Projects",
  "nav.tokens": "Tokens",
  "nav.network": "Networking",
  "nav.audit": "Audit log",
  "nav.section": "Site",

  "header.user": "User",
  "header.project": "Project",
  "header.role": "Role",
  "header.siteAdmin": "site admin",
  "header.logout": "Log out",
  "header.language": "Language",

  "lang.en": "English",
  "lang.zh-CN": "简体中文",

  "login.title": "Sign in to cloudlet",
  "login.subtitle": "Use a console user of this site.",
  "login.username": "Username",
  "login.password": "Password",
  "login.submit": "Sign in",
  "login.submitting": "Signing in…",
  "login.hint": "The initial password of the user admin is in DATA/admin.password on the site.",

  "common.refresh": "Refresh",
  "common.delete": "Delete",
  "common.confirmDelete": "Confirm delete",
  "common.cancel": "Cancel",
  "common.create": "Create",
  "common.creating": "Creating…",
  "common.name": "Name",
  "common.phase": "Phase",
  "common.created": "Created",
  "common.actions": "Actions",
  "common.none": "None",
  "common.yes": "yes",
  "common.no": "no",
  "common.loading": "Loading…",
  "common.empty": "Nothing here yet.",
  "common.dismiss": "Dismiss",
  "common.error": "Error",
  "common.field": "field",
  "common.unknown": "unknown",
  "common.never": "never",

  "overview.title": "Overview",
  "overview.subtitle": "Node capacity, host probe and live events of this site.",
  "overview.site": "Site",
  "overview.version": "Version",
  "overview.nodeName": "Node name",
  "overview.startedAt": "Started",
  "overview.counts": "Resources",
  "overview.noCounts": "No resource counts reported.",
  "overview.nodes": "Nodes",
  "overview.noNodes": "No node has registered yet.",
  "overview.heartbeat": "Heartbeat",
  "overview.schedulable": "Schedulable",
  "overview.capacity": "Capacity",
  "overview.cpus": "CPUs",
  "overview.memory": "Memory",
  "overview.diskFree": "Free disk",
  "overview.probe": "Host probe",
  "overview.kernel": "Kernel",
  "overview.cgroup": "cgroup version",
  "overview.arch": "Architecture",
  "overview.hostname": "Hostname",
  "overview.cpuModel": "CPU model",
  "overview.availableShort": "{n} available",
  "overview.ofTotal": "of {n}",
  "overview.feature": "Feature",
  "overview.available": "Available",
  "overview.detail": "Detail",
  "overview.noFeatures": "The probe has not reported features yet.",
  "overview.nodesForbidden": "Node details are visible to site admins only.",

  "events.title": "Live events",
  "events.time": "Time",
  "events.type": "Type",
  "events.kind": "Kind",
  "events.name": "Name",
  "events.message": "Message",
  "events.waiting": "Waiting for events…",
  "events.connected": "live",
  "events.connecting": "connecting",
  "events.disconnected": "reconnecting",
  "events.gap": "Some events were missed (pruned by retention).",
  "events.clear": "Clear",

  "projects.title": "Projects",
  "projects.subtitle": "Tenants of this site. Deleting a project is a long-running operation.",
  "projects.description": "Description",
  "projects.create": "New project",
  "projects.deleteStarted": "Deletion of project {name} started (operation {op}).",
  "projects.created": "Project {name} created.",
  "projects.readOnly": "Only site admins can create or delete projects.",

  "tokens.title": "API tokens",
  "tokens.subtitle": "Bearer tokens for API clients. A token belongs to one project and carries a role.",
  "tokens.project": "Project",
  "tokens.role": "Role",
  "tokens.expires": "Expires",
  "tokens.create": "New token",
  "tokens.secretTitle": "Token {name} created",
  "tokens.secretNote": "Copy this secret now. It will not be shown again.",
  "tokens.copy": "Copy",
  "tokens.copied": "Copied",
  "tokens.deleted": "Token {name} deleted.",
  "tokens.readOnly": "Your role cannot create or delete tokens in this project.",
  "role.admin": "admin",
  "role.member": "member",
  "role.viewer": "viewer",

  "audit.title": "Audit log",
  "audit.subtitle": "Every change made through the API, newest first.",
  "audit.time": "Time",
  "audit.actor": "Actor",
  "audit.project": "Project",
  "audit.method": "Method",
  "audit.path": "Path",
  "audit.status": "Status",
  "audit.target": "Target",
  "audit.more": "Load older",
  "audit.count": "{n} records",

  "network.title": "Networking",
  "network.subtitle": "VPCs of a project and what lives in them: subnets, security groups, interfaces, elastic IPs, NAT gateways, port forwards and load balancers.",
  "network.project": "Project",
  "network.readOnly": "Your role can view the network of this project but not change it.",
  "network.vpcs": "VPCs",
  "network.subnets": "Subnets",
  "network.securityGroups": "Security groups",
  "network.interfaces": "Network interfaces",
  "network.eips": "Elastic IPs",
  "network.natGateways": "NAT gateways",
  "network.vpc": "VPC",
  "network.subnet": "Subnet",
  "network.cidr": "CIDR",
  "network.noVpc": "Create a VPC first",
  "network.noSubnet": "Create a subnet first",
  "network.rules": "Rules",
  "network.editRules": "Edit rules",
  "network.showRules": "Show rules",
  "network.sgNote": "Stateful: inbound traffic is denied unless a rule allows it; outbound traffic is allowed.",
  "network.noRules": "No inbound rules: all inbound traffic is denied.",
  "network.protocol": "Protocol",
  "network.protocolAll": "all",
  "network.ports": "Ports",
  "network.portsHint": "80 or 8000-8099",
  "network.allPorts": "all ports",
  "network.source": "Source",
  "network.sourceCidr": "CIDR",
  "network.sourceGroup": "Security group",
  "network.addRule": "Add rule",
  "network.removeRule": "Remove",
  "network.unsaved": "Unsaved changes",
  "network.discard": "Discard changes",
  "network.saveRules": "Save rules",
  "network.saving": "Saving…",
  "network.privateIp": "Private IP",
  "network.automatic": "automatic",
  "network.noGroupsInVpc": "The subnet's VPC has no security groups.",
  "network.pickSubnet": "Choose a subnet to see the groups of its VPC.",
  "network.publicIp": "Public IP",
  "network.interface": "Network interface",
  "network.association": "Association",
  "network.associate": "Associate",
  "network.disassociate": "Disassociate",
  "network.noFreeInterface": "No free interface",
  "network.noInterface": "Create a network interface first",
  "network.allocate": "Allocate",
  "network.allocating": "Allocating…",
  "network.eipNote": "Addresses come from the site's public pool ([network] in the site config).",
  "network.eip": "Elastic IP",
  "network.uplink": "uplink address",
  "network.natNote": "One per subnet. Without an elastic IP, egress is translated to the uplink address.",
  "network.portForwards": "Port forwards",
  "network.pfNote": "A public port of the uplink address (or of a free elastic IP) to a port of a network interface.",
  "network.publicPort": "Public port",
  "network.privatePort": "Target port",
  "network.public": "Public",
  "network.target": "Target",
  "network.loadBalancers": "Load balancers",
  "network.lbNote": "Listens on an elastic IP or on an internal VIP of a subnet; TCP health checks take failing backends out.",
  "network.listener": "Listener",
  "network.listenOn": "Listen on",
  "network.internalVip": "Internal VIP in subnet",
  "network.vip": "VIP (optional)",
  "network.vipAuto": "assigned",
  "network.port": "Port",
  "network.backends": "Backends",
  "network.backendsHint": "IP:PORT or IP:PORT*WEIGHT, comma separated",
  "network.backendsBad": "Backend {entry} is not IP:PORT or IP:PORT*WEIGHT",
  "network.affinity": "Affinity",
  "network.affinityNone": "none",
  "network.affinitySource": "source IP",
  "network.healthCheck": "Health check every (s)",
  "network.healthOff": "off",
  "network.healthy": "healthy",
  "network.unhealthy": "down",
  "network.healthUnknown": "not checked yet",

  "error.network": "The site cannot be reached: {message}",
  "notFound.title": "Page not found",
  "notFound.back": "Back to the overview",
} as const;

export type MessageKey = keyof typeof en;
type Table = Record<MessageKey, string>;

const zhCN: Table = {
  "app.name": "cloudlet",
  "app.subtitle": "站点控制台",
  "app.loading": "加载中…",

  "nav.overview": "概览",
  "nav.projects": "项目",
  "nav.tokens": "令牌",
  "nav.network": "网络",
  "nav.audit": "审计日志",
  "nav.section": "站点",

  "header.user": "用户",
  "header.project": "项目",
  "header.role": "角色",
  "header.siteAdmin": "站点管理员",
  "header.logout": "退出登录",
  "header.language": "语言",

  "lang.en": "English",
  "lang.zh-CN": "简体中文",

  "login.title": "登录 cloudlet",
  "login.subtitle": "使用本站点的控制台用户登录。",
  "login.username": "用户名",
  "login.password": "密码",
  "login.submit": "登录",
  "login.submitting": "正在登录…",
  "login.hint": "用户 admin 的初始密码保存在站点的 DATA/admin.password 文件中。",

  "common.refresh": "刷新",
  "common.delete": "删除",
  "common.confirmDelete": "确认删除",
  "common.cancel": "取消",
  "common.create": "创建",
  "common.creating": "正在创建…",
  "common.name": "名称",
  "common.phase": "阶段",
  "common.created": "创建时间",
  "common.actions": "操作",
  "common.none": "无",
  "common.yes": "是",
  "common.no": "否",
  "common.loading": "加载中…",
  "common.empty": "暂无内容。",
  "common.dismiss": "关闭",
  "common.error": "错误",
  "common.field": "字段",
  "common.unknown": "未知",
  "common.never": "从未",

  "overview.title": "概览",
  "overview.subtitle": "本站点的节点容量、主机探测结果和实时事件。",
  "overview.site": "站点",
  "overview.version": "版本",
  "overview.nodeName": "节点名称",
  "overview.startedAt": "启动时间",
  "overview.counts": "资源",
  "overview.noCounts": "没有资源计数。",
  "overview.nodes": "节点",
  "overview.noNodes": "尚无节点注册。",
  "overview.heartbeat": "心跳",
  "overview.schedulable": "可调度",
  "overview.capacity": "容量",
  "overview.cpus": "CPU 数",
  "overview.memory": "内存",
  "overview.diskFree": "可用磁盘",
  "overview.probe": "主机探测",
  "overview.kernel": "内核",
  "overview.cgroup": "cgroup 版本",
  "overview.arch": "架构",
  "overview.hostname": "主机名",
  "overview.cpuModel": "CPU 型号",
  "overview.availableShort": "可用 {n}",
  "overview.ofTotal": "共 {n}",
  "overview.feature": "功能",
  "overview.available": "可用",
  "overview.detail": "详情",
  "overview.noFeatures": "探测尚未报告功能。",
  "overview.nodesForbidden": "只有站点管理员可以查看节点详情。",

  "events.title": "实时事件",
  "events.time": "时间",
  "events.type": "类型",
  "events.kind": "种类",
  "events.name": "名称",
  "events.message": "消息",
  "events.waiting": "等待事件…",
  "events.connected": "已连接",
  "events.connecting": "连接中",
  "events.disconnected": "重新连接中",
  "events.gap": "部分事件已因保留策略被清理，未能送达。",
  "events.clear": "清空",

  "projects.title": "项目",
  "projects.subtitle": "本站点的租户。删除项目是一个长时间运行的操作。",
  "projects.description": "描述",
  "projects.create": "新建项目",
  "projects.deleteStarted": "已开始删除项目 {name}（操作 {op}）。",
  "projects.created": "项目 {name} 已创建。",
  "projects.readOnly": "只有站点管理员可以创建或删除项目。",

  "tokens.title": "API 令牌",
  "tokens.subtitle": "供 API 客户端使用的 Bearer 令牌。每个令牌属于一个项目并带有一个角色。",
  "tokens.project": "项目",
  "tokens.role": "角色",
  "tokens.expires": "过期时间",
  "tokens.create": "新建令牌",
  "tokens.secretTitle": "令牌 {name} 已创建",
  "tokens.secretNote": "请立即复制此密钥。它不会再次显示。",
  "tokens.copy": "复制",
  "tokens.copied": "已复制",
  "tokens.deleted": "令牌 {name} 已删除。",
  "tokens.readOnly": "你的角色无法在此项目中创建或删除令牌。",
  "role.admin": "管理员",
  "role.member": "成员",
  "role.viewer": "只读",

  "audit.title": "审计日志",
  "audit.subtitle": "通过 API 进行的每一次变更，最新的在前。",
  "audit.time": "时间",
  "audit.actor": "操作者",
  "audit.project": "项目",
  "audit.method": "方法",
  "audit.path": "路径",
  "audit.status": "状态码",
  "audit.target": "目标",
  "audit.more": "加载更早的记录",
  "audit.count": "{n} 条记录",

  "network.title": "网络",
  "network.subtitle": "项目的 VPC 及其中的资源：子网、安全组、网络接口、弹性 IP、NAT 网关、端口转发和负载均衡器。",
  "network.project": "项目",
  "network.readOnly": "你的角色可以查看此项目的网络，但不能修改。",
  "network.vpcs": "VPC",
  "network.subnets": "子网",
  "network.securityGroups": "安全组",
  "network.interfaces": "网络接口",
  "network.eips": "弹性 IP",
  "network.natGateways": "NAT 网关",
  "network.vpc": "VPC",
  "network.subnet": "子网",
  "network.cidr": "CIDR",
  "network.noVpc": "请先创建 VPC",
  "network.noSubnet": "请先创建子网",
  "network.rules": "规则",
  "network.editRules": "编辑规则",
  "network.showRules": "查看规则",
  "network.sgNote": "有状态：入站流量默认拒绝，除非有规则允许；出站流量全部允许。",
  "network.noRules": "没有入站规则：所有入站流量都被拒绝。",
  "network.protocol": "协议",
  "network.protocolAll": "全部",
  "network.ports": "端口",
  "network.portsHint": "80 或 8000-8099",
  "network.allPorts": "全部端口",
  "network.source": "来源",
  "network.sourceCidr": "CIDR",
  "network.sourceGroup": "安全组",
  "network.addRule": "添加规则",
  "network.removeRule": "移除",
  "network.unsaved": "有未保存的更改",
  "network.discard": "放弃更改",
  "network.saveRules": "保存规则",
  "network.saving": "正在保存…",
  "network.privateIp": "私有 IP",
  "network.automatic": "自动分配",
  "network.noGroupsInVpc": "该子网所在的 VPC 没有安全组。",
  "network.pickSubnet": "选择子网后可选择其 VPC 的安全组。",
  "network.publicIp": "公网 IP",
  "network.interface": "网络接口",
  "network.association": "关联",
  "network.associate": "关联",
  "network.disassociate": "解除关联",
  "network.noFreeInterface": "没有空闲的接口",
  "network.noInterface": "请先创建网络接口",
  "network.allocate": "分配",
  "network.allocating": "正在分配…",
  "network.eipNote": "地址来自站点的公网地址池（站点配置中的 [network]）。",
  "network.eip": "弹性 IP",
  "network.uplink": "上行链路地址",
  "network.natNote": "每个子网一个。未指定弹性 IP 时，出站流量转换为上行链路地址。",
  "network.portForwards": "端口转发",
  "network.pfNote": "将上行链路地址（或空闲弹性 IP）的公网端口转发到网络接口的端口。",
  "network.publicPort": "公网端口",
  "network.privatePort": "目标端口",
  "network.public": "公网",
  "network.target": "目标",
  "network.loadBalancers": "负载均衡器",
  "network.lbNote": "监听弹性 IP 或子网内部 VIP；TCP 健康检查会摘除故障后端。",
  "network.listener": "监听器",
  "network.listenOn": "监听位置",
  "network.internalVip": "子网内部 VIP",
  "network.vip": "VIP（可选）",
  "network.vipAuto": "自动分配",
  "network.port": "端口",
  "network.backends": "后端",
  "network.backendsHint": "IP:端口 或 IP:端口*权重，以逗号分隔",
  "network.backendsBad": "后端 {entry} 不是 IP:端口 或 IP:端口*权重",
  "network.affinity": "会话保持",
  "network.affinityNone": "无",
  "network.affinitySource": "源 IP",
  "network.healthCheck": "健康检查间隔（秒）",
  "network.healthOff": "关闭",
  "network.healthy": "健康",
  "network.unhealthy": "故障",
  "network.healthUnknown": "尚未检查",

  "error.network": "无法连接站点：{message}",
  "notFound.title": "页面不存在",
  "notFound.back": "返回概览",
};

export const LANGS = ["en", "zh-CN"] as const;
export type Lang = (typeof LANGS)[number];

const TABLES: Record<Lang, Table> = { en, "zh-CN": zhCN };
const STORAGE_KEY = "cloudlet.lang";

function initialLang(): Lang {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved && (LANGS as readonly string[]).includes(saved)) return saved as Lang;
  } catch {
    // storage unavailable
  }
  return "en";
}

export type Translate = (key: MessageKey, vars?: Record<string, string | number>) => string;

interface I18n {
  lang: Lang;
  setLang: (lang: Lang) => void;
  t: Translate;
}

const I18nContext = createContext<I18n | null>(null);

export function I18nProvider({ children }: { children: ReactNode }) {
  const [lang, setLangState] = useState<Lang>(initialLang);

  const setLang = useCallback((next: Lang) => {
    setLangState(next);
    try {
      localStorage.setItem(STORAGE_KEY, next);
    } catch {
      // storage unavailable: the choice lasts for this page only
    }
  }, []);

  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);

  const value = useMemo<I18n>(() => {
    const table = TABLES[lang];
    const t: Translate = (key, vars) => {
      let text: string = table[key] ?? en[key] ?? key;
      if (vars) {
        for (const [name, v] of Object.entries(vars)) text = text.split(`{${name}}`).join(String(v));
      }
      return text;
    };
    return { lang, setLang, t };
  }, [lang, setLang]);

  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18n {
  const ctx = useContext(I18nContext);
  if (!ctx) throw new Error("useI18n outside I18nProvider");
  return ctx;
}

/** A role name in the current language; unknown roles are shown as they are. */
export function roleLabel(t: Translate, role: string | undefined | null): string {
  if (role === "admin" || role === "member" || role === "viewer") return t(`role.${role}`);
  return role || t("common.unknown");
}
