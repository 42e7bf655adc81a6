import { createContext, useContext } from "react";
import type { Whoami } from "./api";

export interface Session {
  who: Whoami;
  /** True when the caller may create/delete tokens and users in its project. */
  isProjectAdmin: boolean;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}

export function sessionFrom(who: Whoami): Session {
  return { who, isProjectAdmin: who.site_admin || who.role === "admin" };
}
