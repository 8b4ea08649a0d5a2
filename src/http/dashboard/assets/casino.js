// The casino tab (seed 003's Streamlit dashboard): Hotel Room Offers, Drink Offers,
// Fulfillment, Analytics, All Members, and a sidebar with the reward thresholds and
// the refresh interval.
//
// The offer lists follow the seed's watermark: every refresh interval the page takes
// the qualifiers of that moment, and shows them during the next interval; earlier
// takes stay below as past qualifying periods, collapsed.

import { act, request, say } from "./api.js";
import { barChart } from "./charts.js";
import { cards, csv, download, el, fill, fmt, sortBy, table } from "./ui.js";

export const relations = [
  "hotel_room_offers", "drink_offers", "redeemed_offers", "pending_offers", "game_stats",
  "member_leaderboard", "casino_watermark", "casino_settings",
];

const OFFERS = {
  hotel: { relation: "hotel_room_offers", title: "Hotel Room Offers", metric: "total_spend", metricLabel: "Total spend" },
  drink: { relation: "drink_offers", title: "Drink Offers", metric: "loss_amount", metricLabel: "Loss" },
};
const SUBTABS = [["hotel", "Hotel Room Offers"], ["drink", "Drink Offers"], ["fulfillment", "Fulfillment"],
  ["analytics", "Analytics"], ["members", "All Members"]];
const PAST_PERIODS = 10;
const INTERVALS = [1, 5, 10, 30, 60];

export function mount(section, live) {
  let subtab = "hotel";
  let interval = Number(sessionStorage.getItem("diffmart.casinoInterval")) || 10;
  let timer = null;
  // Per offer type: the qualifiers shown now and the earlier takes, newest first.
  const takes = { hotel: [], drink: [] };
  const openPeriods = new Set();

  const content = el("div", { class: "content" });
  const nav = el("div", { class: "subtabs", role: "tablist" }, SUBTABS.map(([id, label]) =>
    el("button", { "data-subtab": id, onclick: () => { subtab = id; render(); } }, label)));

  const hotelInput = el("input", { type: "number", min: "0", step: "100", id: "hotel-threshold" });
  const drinkInput = el("input", { type: "number", min: "0", step: "100", id: "drink-threshold" });
  const settingsNote = el("p", { class: "note", "data-testid": "thresholds-now" });
  const apply = el("button", { class: "primary", id: "apply-thresholds", onclick: applyThresholds }, "Apply thresholds");
  const intervalSelect = el("select", { id: "refresh-interval", onchange: () => {
    interval = Number(intervalSelect.value);
    sessionStorage.setItem("diffmart.casinoInterval", interval);
    restartTimer();
    render();
  } }, INTERVALS.map((s) => el("option", { value: s, selected: s === interval }, `${s} s`)));
  const sidebar = el("aside", { class: "sidebar" },
    el("h3", {}, "Reward thresholds"), settingsNote,
    el("label", {}, "Hotel room: total spend ≥", hotelInput),
    el("label", {}, "Drink: loss ≥", drinkInput), apply,
    el("h3", {}, "Refresh interval"), el("label", {}, "Offers refresh every", intervalSelect));
  fill(section, el("div", { class: "layout" }, el("div", {}, nav, content), sidebar));

  async function applyThresholds() {
    const body = {};
    if (hotelInput.value !== "") body.hotel_threshold = Number(hotelInput.value);
    if (drinkInput.value !== "") body.drink_threshold = Number(drinkInput.value);
    await act(() => request("POST", "/api/casino/thresholds", { body }),
      (row) => `Thresholds set: hotel ≥ ${fmt.money(row.hotel_threshold)}, drink ≥ ${fmt.money(row.drink_threshold)}`);
  }

  function take() {
    const at = new Date();
    for (const type of Object.keys(OFFERS)) {
      takes[type].unshift({ at, rows: live.rows(OFFERS[type].relation) });
      takes[type].length = Math.min(takes[type].length, PAST_PERIODS + 1);
    }
    render();
  }

  function restartTimer() {
    clearInterval(timer);
    timer = setInterval(take, interval * 1000);
    take();
  }

  let started = false;
  function render(visible) {
    if (visible === false) return;
    if (!started && live.has("hotel_room_offers")) {
      started = true;
      restartTimer();
      return;
    }
    for (const button of nav.querySelectorAll("button")) {
      button.setAttribute("aria-selected", String(button.dataset.subtab === subtab));
    }
    renderSettings();
    if (subtab in OFFERS) fill(content, offers(subtab));
    else if (subtab === "fulfillment") fill(content, fulfillment());
    else if (subtab === "analytics") fill(content, analytics());
    else fill(content, members());
  }

  function renderSettings() {
    const has = live.has("casino_settings");
    apply.disabled = hotelInput.disabled = drinkInput.disabled = !has;
    const [settings] = live.rows("casino_settings");
    settingsNote.textContent = !has ? "This server has no casino_settings table: thresholds are launch options."
      : settings ? `Now: hotel ≥ ${fmt.money(settings.hotel_threshold)}, drink ≥ ${fmt.money(settings.drink_threshold)}`
        : "No settings row yet.";
  }

  function redeemedKeys() {
    return new Set(live.rows("redeemed_offers").map((r) => `${r.member_id}|${r.offer_type}|${r.redemption_date}`));
  }

  function offerTable(type, rows, withActions) {
    const offer = OFFERS[type];
    const redeemed = redeemedKeys();
    const isRedeemed = (row) => redeemed.has(`${row.member_id}|${type}|${String(row.window_start).slice(0, 10)}`);
    const columns = [
      { key: "member_id", label: "Member" },
      { key: "member_name", label: "Name" },
      { key: offer.metric, label: offer.metricLabel, format: fmt.money, num: true },
      { key: "net_amount", label: "Net", format: fmt.money, num: true },
      { key: "transaction_count", label: "Transactions", format: fmt.count, num: true },
      { key: "window_start", label: "Window", cell: (r) => `${fmt.clock(r.window_start)} – ${fmt.clock(r.window_end)}` },
      { key: "redeemed", label: "Status", cell: (r) => (isRedeemed(r) ? fmt.badge("redeemed") : fmt.badge("open")) },
    ];
    if (withActions) {
      columns.push({ key: "action", label: "", cell: (r) => el("button", {
        class: "redeem", "data-member": r.member_id, "data-window": r.window_start,
        onclick: () => act(() => request("POST", "/api/casino/redeem", { body: {
          member_id: r.member_id, member_name: r.member_name, offer_type: type, window_start: r.window_start,
        } }), `Marked member ${r.member_id}'s ${type} offer as redeemed`),
      }, "Mark as redeemed") });
    }
    return table(columns, sortBy(rows, offer.metric, true), { testid: `${type}-offers` });
  }

  function offers(type) {
    const offer = OFFERS[type];
    const [now, ...past] = takes[type];
    const [watermark] = live.rows("casino_watermark");
    const nodes = [
      el("h2", {}, offer.title),
      el("p", { class: "note" },
        now ? `Qualifiers as of ${fmt.clock(now.at)}: `
          + `during each ${interval} s interval this shows what qualified when the previous one ended. ` : "Waiting for data. ",
        watermark ? `Casino watermark ${fmt.time(watermark.watermark)} (${fmt.count(watermark.late_transactions)} late transactions dropped).` : ""),
      cards([["Qualifying now", fmt.count(now ? now.rows.length : 0), `${type}-count`],
        ["Qualifying live", fmt.count(live.rows(offer.relation).length), `${type}-live-count`]]),
      el("div", { class: "panel scroll" }, offerTable(type, now ? now.rows : [], true)),
      past.length ? el("h3", {}, "Past qualifying periods") : null,
    ];
    for (const period of past) {
      const id = `${type}-${+period.at}`;
      const details = el("details", { open: openPeriods.has(id), ontoggle: () => {
        if (details.open) openPeriods.add(id); else openPeriods.delete(id);
      } }, el("summary", {}, `${fmt.clock(period.at)} · ${period.rows.length} qualifiers`),
      offerTable(type, period.rows, false));
      nodes.push(details);
    }
    return nodes;
  }

  function fulfillment() {
    const redeemed = sortBy(live.rows("redeemed_offers"), "redeemed_at", true);
    const pending = sortBy(live.rows("pending_offers"), "metric", true);
    return [
      el("h2", {}, "Fulfillment"),
      cards([["Redeemed offers", fmt.count(redeemed.length), "redeemed-count"],
        ["Pending offers", fmt.count(pending.length), "pending-count"]]),
      el("h3", {}, "All redeemed offers"),
      el("div", { class: "panel scroll" }, table([
        { key: "member_id", label: "Member" }, { key: "member_name", label: "Name" },
        { key: "offer_type", label: "Offer", format: fmt.badge }, { key: "redemption_date", label: "Day" },
        { key: "redeemed_at", label: "Redeemed at", format: fmt.time },
      ], redeemed, { testid: "redeemed-offers" })),
      el("h3", {}, "Pending (qualified, not redeemed that day)"),
      el("div", { class: "panel scroll" }, table([
        { key: "member_id", label: "Member" }, { key: "member_name", label: "Name" },
        { key: "offer_type", label: "Offer", format: fmt.badge }, { key: "metric", label: "Metric", format: fmt.money, num: true },
        { key: "window_start", label: "Window", format: fmt.time },
      ], pending, { testid: "pending-offers" })),
    ];
  }

  function analytics() {
    const games = sortBy(live.rows("game_stats"), "game_type");
    const members = live.rows("member_leaderboard");
    const sum = (rows, key) => rows.reduce((total, r) => total + (r[key] || 0), 0);
    const wagered = sum(games, "total_wagered"), paid = sum(games, "total_paid_out");
    const top = sortBy(members, "lifetime_spend", true).slice(0, 10);
    return [
      el("h2", {}, "Analytics"),
      cards([["Transactions", fmt.count(sum(games, "total_bets")), "casino-transactions"],
        ["Members", fmt.count(members.length), "casino-members"],
        ["Wagered", fmt.money(wagered)], ["Paid out", fmt.money(paid)],
        ["Casino result (bets − wins)", fmt.money(wagered - paid)]]),
      el("div", { class: "grid2" },
        el("div", { class: "panel" }, el("h3", {}, "Per game: wagered and paid out"), barChart({
          categories: games.map((g) => g.game_type), format: fmt.money, testid: "game-chart",
          series: [{ name: "wagered", values: games.map((g) => g.total_wagered) },
            { name: "paid out", values: games.map((g) => g.total_paid_out) }],
        })),
        el("div", { class: "panel" }, el("h3", {}, "Top 10 members by lifetime spend"), barChart({
          categories: top.map((m) => m.member_name || m.member_id), format: fmt.money,
          series: [{ name: "spend", values: top.map((m) => m.lifetime_spend) },
            { name: "winnings", values: top.map((m) => m.lifetime_winnings) }],
        }))),
      el("h3", {}, "Game statistics"),
      el("div", { class: "panel" }, table([
        { key: "game_type", label: "Game" }, { key: "total_bets", label: "Transactions", format: fmt.count, num: true },
        { key: "total_wagered", label: "Wagered", format: fmt.money, num: true },
        { key: "total_paid_out", label: "Paid out", format: fmt.money, num: true },
        { key: "house_edge", label: "House edge (wins − bets)", format: fmt.money, num: true },
      ], games, { testid: "game-stats" })),
    ];
  }

  function members() {
    const rows = sortBy(live.rows("member_leaderboard"), "lifetime_spend", true);
    const columns = ["member_id", "member_name", "lifetime_spend", "lifetime_winnings", "lifetime_transactions", "last_seen"];
    return [
      el("h2", {}, "All Members"),
      el("button", { id: "download-members", onclick: () => {
        download("members.csv", "text/csv", csv(columns, rows));
        say(`Downloaded ${rows.length} members as CSV`);
      } }, "Download CSV"),
      el("div", { class: "panel scroll" }, table([
        { key: "member_id", label: "Member" }, { key: "member_name", label: "Name" },
        { key: "lifetime_spend", label: "Spend", format: fmt.money, num: true },
        { key: "lifetime_winnings", label: "Winnings", format: fmt.money, num: true },
        { key: "lifetime_transactions", label: "Transactions", format: fmt.count, num: true },
        { key: "last_seen", label: "Last seen", format: fmt.time },
      ], rows, { testid: "members" })),
    ];
  }

  return render;
}
