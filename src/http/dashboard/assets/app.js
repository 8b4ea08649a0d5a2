// The dashboard: tabs, one live connection for every relation the tabs show, and
// each tab redrawn when its relations change while it is shown.

import { bindAdminKey, request, say } from "./api.js";
import { Live } from "./live.js";
import * as casino from "./casino.js";
import * as pricing from "./pricing.js";
import * as inventory from "./inventory.js";
import * as retail from "./retail.js";
import * as ecommerce from "./ecommerce.js";
import * as generator from "./generator.js";

const TABS = { casino, pricing, inventory, retail, ecommerce, generator };

async function start() {
  bindAdminKey(document.getElementById("admin-key"));
  const status = document.getElementById("live-status");
  const onStatus = (text, up) => {
    status.textContent = text;
    status.className = `status ${up ? "live" : "down"}`;
  };
  // Follow only the relations this server has (casino_settings may be missing).
  const known = new Set((await request("GET", "/api/relations")).map((r) => r.name));
  const wanted = [...new Set(Object.values(TABS).flatMap((tab) => tab.relations))].filter((r) => known.has(r));
  const live = new Live(wanted, onStatus);

  const renders = {};
  for (const [name, tab] of Object.entries(TABS)) {
    renders[name] = tab.mount(document.getElementById(`tab-${name}`), live);
  }
  let shown = null;
  const show = (name) => {
    if (!(name in TABS)) name = "casino";
    shown = name;
    for (const button of document.querySelectorAll("#tabs button")) {
      button.setAttribute("aria-selected", String(button.dataset.tab === name));
    }
    for (const other of Object.keys(TABS)) {
      document.getElementById(`tab-${other}`).hidden = other !== name;
    }
    for (const [other, render] of Object.entries(renders)) render(other === name);
  };
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => { history.replaceState(null, "", `#${button.dataset.tab}`); show(button.dataset.tab); });
  }
  live.subscribe((changed) => {
    const tab = TABS[shown];
    if (tab.relations.some((r) => changed.has(r))) renders[shown](true);
  });
  show(location.hash.slice(1));
}

start().catch((e) => say(`The dashboard could not start: ${e.message}`, { error: true }));
