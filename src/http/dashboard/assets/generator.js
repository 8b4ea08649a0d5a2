// The generator tab: the embedded generator's status, start, stop and rate (the
// /generator routes; changes need the admin API key).

import { act, request } from "./api.js";
import { cards, el, fill, fmt } from "./ui.js";

export const relations = [];

const STATUS_EVERY_MS = 2000;

export function mount(section) {
  const status = el("div", { "data-testid": "generator-status" }, el("p", { class: "note" }, "Reading the status…"));
  const rate = el("input", { id: "generator-rate", placeholder: "events/s or natural", size: 18 });
  const show = (s) => fill(status, cards([
    ["State", s.finished ? "finished" : s.running ? "running" : "stopped", "generator-state"],
    ["Events emitted", fmt.count(s.events_emitted), "generator-events"],
    ["Pace", s.pace === "fixed" ? `${fmt.count(s.rate)} events/s` : "natural (wall clock)"],
    ["Event time", fmt.time(s.event_time)],
  ]));
  const refresh = async () => {
    try {
      show(await request("GET", "/generator/status"));
    } catch (e) {
      fill(status, el("p", { class: "note" }, `No generator: ${e.message}`));
    }
  };
  const control = (path, done) => act(() => request("POST", path, { admin: true }), done).then(refresh);
  fill(section, el("h2", {}, "Generator"), status,
    el("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      control(`/generator/rate/${encodeURIComponent(rate.value.trim() || "natural")}`, "Rate set");
    } },
    el("button", { type: "button", class: "primary", id: "generator-start", onclick: () => control("/generator/start", "Generator started") }, "Start"),
    el("button", { type: "button", id: "generator-stop", onclick: () => control("/generator/stop", "Generator stopped") }, "Stop"),
    el("label", {}, "Rate", rate), el("button", { type: "submit", id: "generator-set-rate" }, "Set rate")));
  let timer = null;
  return function render(visible) {
    if (visible && !timer) {
      refresh();
      timer = setInterval(refresh, STATUS_EVERY_MS);
    } else if (!visible && timer) {
      clearInterval(timer);
      timer = null;
    }
  };
}
