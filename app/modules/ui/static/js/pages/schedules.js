// Schedules: list, pause, resume, delete, next fire times (shows the API's refusal if absent).

import { del, enc, get, post } from "../api.js";
import { chip, confirmDialog, errorBox, every, fmtTime, h, mount } from "../dom.js";

function nextTimes(s) {
  const times = s.next_fire_times || s.next_fires || (s.next_fire_at ? [s.next_fire_at] : s.next_run_at ? [s.next_run_at] : []);
  return times.length ? h("ul", { class: "plain" }, times.slice(0, 3).map((t) => h("li", {}, fmtTime(t)))) : "—";
}

export function render(root) {
  const box = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const out = h("div", { "aria-live": "polite" });
  mount(root, h("div", { class: "page-head" }, h("h1", {}, "Schedules")), out, box);

  async function act(label, fn) {
    try { await fn(); mount(out, h("p", { class: "ok", role: "status" }, `${label}: done.`)); load(); }
    catch (err) { mount(out, errorBox(err)); }
  }

  async function load() {
    let page;
    try { page = await get("/v1/schedules?limit=200"); }
    catch (err) {
      mount(box, (err.status === 404 || err.status === 405)
        ? h("div", { class: "card" }, h("p", {}, "This server does not offer schedules yet."), errorBox(err))
        : errorBox(err));
      return;
    }
    if (!page.items.length) { mount(box, h("p", { class: "muted empty" }, "No schedules.")); return; }
    mount(box, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Schedule", "Workflow", "When", "State", "Next fires", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, page.items.map((sc) => {
        const id = sc.id ?? sc.name;
        const paused = sc.paused === true || sc.status === "paused" || sc.state === "paused";
        return h("tr", { "data-schedule": id },
          h("td", { class: "mono" }, sc.name ?? id),
          h("td", {}, h("a", { href: `#/workflows/${enc(sc.workflow ?? "")}` }, sc.workflow ?? ""), sc.version ? ` v${sc.version}` : ""),
          h("td", { class: "mono" }, sc.cron ?? (sc.interval_seconds != null ? `every ${sc.interval_seconds}s` : null) ?? sc.every ?? sc.spec ?? ""),
          h("td", {}, chip(paused ? "paused" : "active")),
          h("td", {}, nextTimes(sc)),
          h("td", { class: "row" },
            paused
              ? h("button", { type: "button", onclick: async () => { if (await confirmDialog("Resume this schedule?", h("p", {}, String(sc.name ?? id)), "Resume")) act("Resume", () => post(`/v1/schedules/${enc(id)}/resume`)); } }, "Resume")
              : h("button", { type: "button", onclick: async () => { if (await confirmDialog("Pause this schedule?", h("p", {}, String(sc.name ?? id)), "Pause")) act("Pause", () => post(`/v1/schedules/${enc(id)}/pause`)); } }, "Pause"),
            h("button", { type: "button", class: "danger", onclick: async () => { if (await confirmDialog("Delete this schedule?", h("p", {}, String(sc.name ?? id)), "Delete", true)) act("Delete", () => del(`/v1/schedules/${enc(id)}`)); } }, "Delete")));
      })))));
  }
  return every(10000, load);
}
