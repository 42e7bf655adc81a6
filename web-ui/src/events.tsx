// Live event feed: one EventSource on /v1/events?stream=true for the whole
// console while a user is signed in. Pages read the newest events and can
// subscribe to refresh themselves when a kind they show changes.
import { createContext, useContext, useEffect, useRef, useSyncExternalStore, type ReactNode } from "react";
import type { CloudEvent } from "./api";

export const MAX_EVENTS = 50;

// EventSource hands only unnamed ("message") events to onmessage; the daemon
// names each SSE message after the event type, so listen for those too.
const NAMED_TYPES = ["created", "updated", "deleted", "status", "gap", "deleting", "progress", "warning", "error"];

export type FeedState = "connecting" | "open" | "closed";

export interface FeedEntry {
  key: string;
  event: CloudEvent;
}

interface Snapshot {
  entries: FeedEntry[];
  state: FeedState;
}

type EventListener = (event: CloudEvent) => void;

export class EventFeed {
  private source: EventSource | null = null;
  private snapshot: Snapshot = { entries: [], state: "closed" };
  private readonly storeListeners = new Set<() => void>();
  private readonly eventListeners = new Set<EventListener>();
  private lastCursor: number | null = null;
  private seq = 0;
  private retryTimer: number | null = null;
  private retryDelay = 1000;
  private running = false;

  /** Called when the stream is refused: the session may be gone. */
  onRefused: (() => void) | null = null;

  start(): void {
    if (this.running) return;
    this.running = true;
    this.open();
  }

  stop(): void {
    this.running = false;
    if (this.retryTimer !== null) window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.source?.close();
    this.source = null;
    this.setState("closed");
  }

  clear(): void {
    this.snapshot = { ...this.snapshot, entries: [] };
    this.notify();
  }

  getSnapshot = (): Snapshot => this.snapshot;

  subscribeStore = (listener: () => void): (() => void) => {
    this.storeListeners.add(listener);
    return () => this.storeListeners.delete(listener);
  };

  onEvent(listener: EventListener): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  private open(): void {
    const url = this.lastCursor === null ? "/v1/events?stream=true" : `/v1/events?stream=true&after=${this.lastCursor}`;
    this.setState("connecting");
    const source = new EventSource(url, { withCredentials: false });
    this.source = source;
    source.onopen = () => {
      this.retryDelay = 1000;
      this.setState("open");
    };
    source.onmessage = (msg) => this.handle(msg, "message");
    for (const type of NAMED_TYPES) {
      source.addEventListener(type, (msg) => this.handle(msg as MessageEvent, type));
    }
    source.onerror = () => {
      if (!this.running || this.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // The browser gives up on HTTP errors (e.g. 401); reconnect ourselves
        // with ?after= so no event is lost, and let the app re-check the session.
        this.source = null;
        this.setState("closed");
        this.onRefused?.();
        this.scheduleRetry();
      } else {
        this.setState("connecting");
      }
    };
  }

  private scheduleRetry(): void {
    if (!this.running || this.retryTimer !== null) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, 15000);
    this.retryTimer = window.setTimeout(() => {
      this.retryTimer = null;
      if (this.running) this.open();
    }, delay);
  }

  private handle(msg: MessageEvent, sseType: string): void {
    let event: CloudEvent;
    try {
      const parsed: unknown = typeof msg.data === "string" && msg.data ? JSON.parse(msg.data) : {};
      event = (parsed && typeof parsed === "object" ? parsed : { message: String(parsed) }) as CloudEvent;
    } catch {
      event = { type: sseType, message: String(msg.data ?? "") };
    }
    if (!event.type) event = { ...event, type: sseType === "message" ? "event" : sseType };
    if (sseType === "gap") event = { ...event, type: "gap" };

    let cursor = typeof event.cursor === "number" ? event.cursor : Number.NaN;
    if (Number.isNaN(cursor) && msg.lastEventId && /^\d+$/.test(msg.lastEventId)) cursor = Number(msg.lastEventId);
    if (!Number.isNaN(cursor)) {
      if (event.type !== "gap" && this.lastCursor !== null && cursor <= this.lastCursor) return; // replayed
      this.lastCursor = this.lastCursor === null ? cursor : Math.max(this.lastCursor, cursor);
    }

    this.seq += 1;
    const key = Number.isNaN(cursor) ? `s${this.seq}` : `c${cursor}-${this.seq}`;
    const entries = [{ key, event }, ...this.snapshot.entries].slice(0, MAX_EVENTS);
    this.snapshot = { ...this.snapshot, entries };
    this.notify();
    for (const listener of this.eventListeners) {
      try {
        listener(event);
      } catch (err) {
        console.error("event listener failed", err);
      }
    }
  }

  private setState(state: FeedState): void {
    if (this.snapshot.state === state) return;
    this.snapshot = { ...this.snapshot, state };
    this.notify();
  }

  private notify(): void {
    for (const listener of this.storeListeners) listener();
  }
}

const FeedContext = createContext<EventFeed | null>(null);

export function EventFeedProvider({ feed, children }: { feed: EventFeed; children: ReactNode }) {
  return <FeedContext.Provider value={feed}>{children}</FeedContext.Provider>;
}

export function useFeed(): EventFeed {
  const feed = useContext(FeedContext);
  if (!feed) throw new Error("useFeed outside EventFeedProvider");
  return feed;
}

export function useFeedSnapshot(): Snapshot {
  const feed = useFeed();
  return useSyncExternalStore(feed.subscribeStore, feed.getSnapshot);
}

/** Runs `callback` (debounced) whenever an event about one of `kinds` arrives. */
export function useKindEvents(kinds: string[], callback: () => void, delayMs = 300): void {
  const feed = useFeed();
  const cb = useRef(callback);
  cb.current = callback;
  const key = kinds.join(",");
  useEffect(() => {
    const wanted = new Set(key.split(","));
    let timer: number | null = null;
    const off = feed.onEvent((event) => {
      if (!event.kind || !wanted.has(event.kind)) return;
      if (timer !== null) window.clearTimeout(timer);
      timer = window.setTimeout(() => {
        timer = null;
        cb.current();
      }, delayMs);
    });
    return () => {
      off();
      if (timer !== null) window.clearTimeout(timer);
    };
  }, [feed, key, delayMs]);
}
