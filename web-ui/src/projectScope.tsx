// The project a resource page acts in. A site admin may pick any project (kept
// in ?project= so a reload stays there); everyone else acts in their own. Used
// by the networking, containers and storage pages.
import { useState } from "react";
import { api, type List, type ProjectResource } from "./api";
import { useLoad } from "./components/ui";
import { navigate } from "./router";
import { useSession } from "./session";

/** The `project` query parameter for API calls: set only for site admins. */
export type Scope = { project: string } | undefined;

function projectFromUrl(): string | null {
  return new URLSearchParams(window.location.search).get("project");
}

/** The page's project, its API scope, and what the picker offers. `path` is the page's route. */
export function useProjectScope(path: string) {
  const { who } = useSession();
  const siteAdmin = who.site_admin;
  const canWrite = siteAdmin || who.role === "admin" || who.role === "member";
  const [project, setProjectState] = useState(() => (siteAdmin ? projectFromUrl() : null) ?? who.project);
  const setProject = (next: string) => {
    setProjectState(next);
    navigate(next === who.project ? path : `${path}?project=${encodeURIComponent(next)}`, { replace: true });
  };
  const scope: Scope = siteAdmin ? { project } : undefined;
  const projects = useLoad(
    () => (siteAdmin ? api.get<List<ProjectResource>>("/v1/projects") : Promise.resolve({ items: [] })),
    [siteAdmin],
  );
  const names = Array.from(new Set([who.project, project, ...(projects.data?.items ?? []).map((p) => p.name)])).sort();
  return { project, setProject, scope, siteAdmin, canWrite, names, projectsError: projects.error, deps: [project, siteAdmin] };
}

/** The site admin's project select (nothing for others). */
export function ProjectPicker(props: { scope: ReturnType<typeof useProjectScope>; label: string; testId: string }) {
  const { scope: s } = props;
  if (!s.siteAdmin) return null;
  return (
    <label className="inline-field">
      <span>{props.label}</span>
      <select value={s.project} onChange={(e) => s.setProject(e.target.value)} data-testid={props.testId}>
        {s.names.map((p) => (
          <option key={p} value={p}>
            {p}
          </option>
        ))}
      </select>
    </label>
  );
}
