// What the sections of the Storage page share: their context, the settling
// tests the page polls on, and small formatters (MiB, a snapshot's name).
import type { SnapshotResource, VolumeResource } from "../../api";
import type { Loaded } from "../../components/ui";
import type { Scope } from "../network/shared";

export type { Scope };

/** What both sections get: the lists of the project, the scope and reloaders. */
export interface Ctx {
  scope: Scope;
  canWrite: boolean;
  volumes: VolumeResource[];
  snapshots: SnapshotResource[];
  loads: { volumes: Loaded<unknown>; snapshots: Loaded<unknown> };
  reload: { volumes: () => void; snapshots: () => void };
}

export const MIB = 1024 * 1024;

/** A volume still being made, or whose status has not caught up with its spec (a grow). */
export function volumeSettling(v: VolumeResource): boolean {
  const st = v.status;
  if (!st?.phase || st.phase === "Creating") return true;
  return typeof v.generation === "number" && typeof st.observed_generation === "number" && st.observed_generation < v.generation;
}

export function snapshotSettling(s: SnapshotResource): boolean {
  return !s.status?.phase || s.status.phase === "Pending";
}

/** Bytes as MiB with one decimal ("0.1"), or undefined when unknown. */
export function mibOf(bytes: number | undefined): string | undefined {
  return typeof bytes === "number" && Number.isFinite(bytes) ? (bytes / MIB).toFixed(1) : undefined;
}

/** The condition `FilesystemResized` False with reason `OnNextAttach`: the filesystem grows at the next attach. */
export function growsOnNextAttach(v: VolumeResource): string | null {
  const c = v.status?.conditions?.find((x) => x.type === "FilesystemResized");
  return c && c.status === "False" && c.reason === "OnNextAttach" ? (c.message ?? "") : null;
}

const pad = (n: number) => String(n).padStart(2, "0");

/** `<volume>-<yyyymmddhhmmss>` (local time), the volume's part cut so the name stays within 63 characters. */
export function snapshotName(volume: string, at: Date = new Date()): string {
  const stamp =
    `${at.getFullYear()}${pad(at.getMonth() + 1)}${pad(at.getDate())}` +
    `${pad(at.getHours())}${pad(at.getMinutes())}${pad(at.getSeconds())}`;
  const base = volume.slice(0, 63 - stamp.length - 1).replace(/-+$/, "");
  return `${base}-${stamp}`;
}

/** A positive whole number of MiB from a field; throws `message` otherwise. */
export function parseMib(text: string, message: string): number {
  const trimmed = text.trim();
  const n = Number(trimmed);
  if (!trimmed || !Number.isInteger(n) || n <= 0) throw new Error(message);
  return n;
}
