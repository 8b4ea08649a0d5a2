// The page's copy of the relations it shows, kept current by /api/live (Server-Sent
// Events): each relation's rows first, then every change batch of the store.

/** Rows of one relation as a multiset: key (the row's JSON) → { row, count }. */
class Relation {
  constructor(columns) {
    this.columns = columns;
    this.rows = new Map();
  }
  apply(row, diff) {
    const key = JSON.stringify(row);
    const entry = this.rows.get(key);
    const count = (entry ? entry.count : 0) + diff;
    if (count > 0) this.rows.set(key, { row, count });
    else this.rows.delete(key);
  }
  /** Every row, repeated by multiplicity. */
  list() {
    const out = [];
    for (const { row, count } of this.rows.values()) for (let i = 0; i < count; i++) out.push(row);
    return out;
  }
}

export class Live {
  constructor(relations, onStatus) {
    this.names = relations;
    this.relations = new Map();
    this.listeners = [];
    this.changed = new Set();
    this.flushPending = false;
    this.time = null;
    this.onStatus = onStatus;
    this.connect();
  }

  connect() {
    const source = new EventSource(`/api/live?relations=${this.names.join(",")}`);
    this.source = source;
    source.addEventListener("rows", (e) => {
      const data = JSON.parse(e.data);
      const relation = new Relation(data.columns);
      for (const row of data.rows) relation.apply(row, 1);
      this.relations.set(data.relation, relation);
      this.time = data.time;
      this.touch(data.relation);
    });
    source.addEventListener("ready", () => this.onStatus(`live · time ${this.time}`, true));
    source.addEventListener("changes", (e) => {
      const data = JSON.parse(e.data);
      for (const { relation, row, diff } of data.changes) {
        this.relations.get(relation)?.apply(row, diff);
        this.touch(relation);
      }
      this.time = data.time;
      this.onStatus(`live · time ${this.time}`, true);
    });
    source.addEventListener("end", (e) => {
      // The server ended the stream (too slow, shutting down): start over in a while.
      source.close();
      this.onStatus(`disconnected: ${JSON.parse(e.data).error}; reconnecting…`, false);
      setTimeout(() => this.connect(), 3000);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        this.onStatus("disconnected; reconnecting…", false);
        setTimeout(() => this.connect(), 3000);
      } else {
        this.onStatus("reconnecting…", false);
      }
    };
  }

  /** The rows of `name` now (empty before they arrive). */
  rows(name) {
    return this.relations.get(name)?.list() ?? [];
  }

  has(name) {
    return this.relations.has(name);
  }

  /** Calls `listener(changedNames)` after changes, at most a few times a second. */
  subscribe(listener) {
    this.listeners.push(listener);
  }

  touch(name) {
    this.changed.add(name);
    if (this.flushPending) return;
    this.flushPending = true;
    setTimeout(() => {
      this.flushPending = false;
      const changed = this.changed;
      this.changed = new Set();
      for (const listener of this.listeners) listener(changed);
    }, 150);
  }
}
