// The object browser's listing: one folder (prefix, delimiter "/") of a bucket,
// page by page. The first page is fetched whenever the bucket, the prefix or
// the reload tick changes; more() appends the next one. Stale answers (of an
// older bucket, prefix or page) are dropped.
import { useCallback, useEffect, useRef, useState } from "react";
import { api, seg, type ObjectEntry, type ObjectListing } from "../../api";
import type { Scope } from "./shared";

/** Entries per page. */
export const PAGE_SIZE = 200;

export interface Listing {
  objects: ObjectEntry[];
  prefixes: string[];
  next: string | null;
  /** Usage of the whole bucket (from the newest page). */
  bytes: number | undefined;
  count: number | undefined;
  loading: boolean;
  error: unknown;
}

const EMPTY: Listing = { objects: [], prefixes: [], next: null, bytes: undefined, count: undefined, loading: true, error: null };

export function useListing(bucketId: string, prefix: string, scope: Scope) {
  const [state, setState] = useState<Listing>(EMPTY);
  const [tick, setTick] = useState(0);
  const seq = useRef(0);
  const scopeRef = useRef(scope);
  scopeRef.current = scope;
  const project = scope?.project;

  const fetchPage = useCallback(
    (after: string | null) =>
      api.get<ObjectListing>(`/v1/buckets/${seg(bucketId)}/objects`, {
        query: { ...scopeRef.current, prefix, delimiter: "/", after, limit: PAGE_SIZE },
      }),
    [bucketId, prefix],
  );

  // A reload keeps the rows on screen until the answer; another folder starts empty.
  const shown = useRef("");
  useEffect(() => {
    const mine = ++seq.current;
    const where = `${project ?? ""}\n${bucketId}\n${prefix}`;
    if (shown.current !== where) {
      shown.current = where;
      setState(EMPTY);
    } else {
      setState((s) => ({ ...s, loading: true }));
    }
    fetchPage(null).then(
      (page) => {
        if (mine !== seq.current) return;
        setState({
          objects: page.objects ?? [],
          prefixes: page.prefixes ?? [],
          next: page.next ?? null,
          bytes: page.bytes,
          count: page.count,
          loading: false,
          error: null,
        });
      },
      (error: unknown) => {
        if (mine !== seq.current) return;
        setState({ ...EMPTY, loading: false, error });
      },
    );
  }, [fetchPage, tick, project, bucketId, prefix]);

  const more = useCallback(() => {
    const after = state.next;
    if (!after || state.loading) return;
    const mine = ++seq.current;
    setState((s) => ({ ...s, loading: true }));
    fetchPage(after).then(
      (page) => {
        if (mine !== seq.current) return;
        setState((s) => ({
          objects: [...s.objects, ...(page.objects ?? [])],
          prefixes: Array.from(new Set([...s.prefixes, ...(page.prefixes ?? [])])),
          next: page.next ?? null,
          bytes: page.bytes,
          count: page.count,
          loading: false,
          error: null,
        }));
      },
      (error: unknown) => {
        if (mine !== seq.current) return;
        setState((s) => ({ ...s, loading: false, error }));
      },
    );
  }, [fetchPage, state.next, state.loading]);

  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { ...state, more, reload };
}
