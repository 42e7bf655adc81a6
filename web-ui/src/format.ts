import type { Lang } from "./i18n";

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 17179869184 → "16.0 GiB". */
export function formatBytes(value: unknown): string {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) return "—";
  let n = value;
  let unit = 0;
  while (n >= 1024 && unit < BYTE_UNITS.length - 1) {
    n /= 1024;
    unit += 1;
  }
  const digits = unit === 0 ? 0 : n >= 100 ? 0 : 1;
  return `${n.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

export function formatNumber(value: unknown, lang: Lang): string {
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return value.toLocaleString(lang);
}

function toDate(value: unknown): Date | null {
  if (typeof value !== "string" || !value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A full local date and time, or the raw text if it does not parse. */
export function formatTime(value: unknown, lang: Lang): string {
  const d = toDate(value);
  if (!d) return typeof value === "string" && value ? value : "—";
  return d.toLocaleString(lang, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });
}

/** Only the clock time, for the dense events list. */
export function formatClock(value: unknown, lang: Lang): string {
  const d = toDate(value);
  if (!d) return typeof value === "string" && value ? value : "—";
  return d.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

/** Today only the clock time, else the full date and time (for dense tables; put the full time in a title). */
export function formatRecent(value: unknown, lang: Lang): string {
  const d = toDate(value);
  if (!d) return typeof value === "string" && value ? value : "—";
  return d.toDateString() === new Date().toDateString() ? formatClock(value, lang) : formatTime(value, lang);
}

/** "12 s ago" in the given language. */
export function formatAgo(value: unknown, lang: Lang, now: number = Date.now()): string {
  const d = toDate(value);
  if (!d) return "";
  const seconds = Math.round((d.getTime() - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto", style: "short" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}

/** CSS modifier for a phase badge. */
export function phaseTone(phase: unknown): string {
  const p = typeof phase === "string" ? phase.toLowerCase() : "";
  if (["ready", "running", "active", "succeeded", "available", "bound", "allocated", "attached", "inuse"].includes(p)) return "ok";
  if (["failed", "error", "notready", "unreachable", "degraded", "lost"].includes(p)) return "bad";
  if (["deleting", "terminating", "expired", "revoked", "deleted", "stopped", "exited"].includes(p)) return "muted";
  if (!p) return "muted";
  return "warn";
}
