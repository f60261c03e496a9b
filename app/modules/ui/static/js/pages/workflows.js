// Workflows: definitions and versions, each as a graph and as YAML; start a run; register.

import { enc, get, post } from "../api.js";
import { errorBox, fmtTime, h, mount } from "../dom.js";
import { drawGraph } from "../graph.js";
import { validate } from "../schema.js";
import { toYaml } from "../yaml.js";

export function render(root) {
  const list = h("div", { class: "table-wrap" }, h("p", { class: "muted" }, "Loading…"));
  const more = h("div", { class: "pager" });
  const registerOut = h("div", { "aria-live": "polite" });
  const source = h("textarea", { id: "register-json", class: "json-editor", rows: 10, spellcheck: "false",
    placeholder: '{"name": "hello", "tasks": {"greet": {"handler": "greet"}}}' });
  mount(root,
    h("div", { class: "page-head" }, h("h1", {}, "Workflows")),
    list, more,
    h("details", { class: "card" }, h("summary", {}, "Register a definition"),
      h("form", { class: "stack", onsubmit: async (e) => {
        e.preventDefault();
        let body;
        try { body = JSON.parse(source.value); } catch (err) { mount(registerOut, errorBox(new Error(`not valid JSON: ${err.message}`))); return; }
        try {
          const ref = await post("/v1/workflows", body);
          mount(registerOut, h("p", { class: "ok", role: "status" }, "Registered ",
            h("a", { href: `#/workflows/${enc(ref.name)}` }, ref.name), ` v${ref.version}.`));
          load("");
        } catch (err) { mount(registerOut, errorBox(err)); }
      } },
      h("label", { for: "register-json" }, "Definition (JSON)"), source,
      h("button", { type: "submit", class: "primary", id: "register-submit" }, "Register"), registerOut)));

  async function load(cursor) {
    try {
      const page = await get(`/v1/workflows?limit=100${cursor ? `&cursor=${enc(cursor)}` : ""}`);
      mount(list, page.items.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Workflow", "Latest", "Description", "Registered"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, page.items.map((w) => h("tr", { "data-workflow": w.name },
          h("td", {}, h("a", { href: `#/workflows/${enc(w.name)}` }, w.name)),
          h("td", {}, `v${w.version}`), h("td", {}, w.description || ""), h("td", {}, fmtTime(w.created_at))))))
        : h("p", { class: "muted empty" }, "No workflows registered yet."));
      mount(more, page.next_cursor ? h("button", { type: "button", onclick: () => load(page.next_cursor) }, "Next page →") : null);
    } catch (err) { mount(list, errorBox(err)); }
  }
  load("");
}

function fieldFor(name, schema, required, onChange) {
  const id = `in-${name}`;
  const label = h("label", { for: id }, name, required ? h("span", { class: "req", title: "required" }, " *") : null,
    schema.description ? h("span", { class: "muted" }, ` — ${schema.description}`) : null);
  let input;
  if (Array.isArray(schema.enum)) {
    input = h("select", { id, name }, h("option", { value: "" }, "—"), schema.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
    input.addEventListener("change", () => onChange(name, input.value === "" ? undefined : JSON.parse(input.value)));
  } else if (schema.type === "boolean") {
    input = h("input", { id, name, type: "checkbox" });
    input.addEventListener("change", () => onChange(name, input.checked));
  } else if (schema.type === "integer" || schema.type === "number") {
    input = h("input", { id, name, type: "number", step: schema.type === "integer" ? "1" : "any" });
    input.addEventListener("input", () => onChange(name, input.value === "" ? undefined : Number(input.value)));
  } else if (schema.type === "string") {
    input = h("input", { id, name, type: "text" });
    input.addEventListener("input", () => onChange(name, input.value === "" && !required ? undefined : input.value));
  } else {
    return null; // objects and arrays are edited in the JSON box
  }
  const set = (value) => {
    if (input.type === "checkbox") input.checked = value === true;
    else if (input.tagName === "SELECT") input.value = value === undefined ? "" : JSON.stringify(value);
    else input.value = value === undefined || value === null ? "" : String(value);
  };
  return { node: h("div", { class: "field" }, label, input), set };
}

function startForm(name, version, schema) {
  const out = h("div", { "aria-live": "polite" });
  const issues = h("ul", { class: "issues" });
  const json = h("textarea", { id: "run-input", class: "json-editor", rows: 6, spellcheck: "false" }, "{}");
  const key = h("input", { id: "idempotency-key", autocomplete: "off", placeholder: "optional" });
  const props = schema && schema.type === "object" && schema.properties ? schema.properties : {};
  const required = new Set((schema && schema.required) || []);
  const current = () => { try { return JSON.parse(json.value); } catch { return undefined; } };
  const fields = {};
  const onField = (prop, value) => {
    const base = current();
    const obj = base && typeof base === "object" && !Array.isArray(base) ? base : {};
    if (value === undefined) delete obj[prop]; else obj[prop] = value;
    json.value = JSON.stringify(obj, null, 2);
    check();
  };
  for (const [prop, sub] of Object.entries(props)) {
    const f = fieldFor(prop, sub || {}, required.has(prop), onField);
    if (f) fields[prop] = f;
  }
  const check = () => {
    const value = current();
    const problems = value === undefined ? [{ path: "input", message: "is not valid JSON" }] : validate(schema, value);
    mount(issues, problems.map((p) => h("li", {}, h("code", {}, p.path), ` ${p.message}`)));
    return problems;
  };
  json.addEventListener("input", () => {
    const value = current();
    if (value && typeof value === "object") for (const [prop, f] of Object.entries(fields)) f.set(value[prop]);
    check();
  });
  const form = h("form", { class: "stack start-form", novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    if (check().length) { mount(out, h("p", { class: "alert", role: "alert" }, "The input does not match the workflow's input_schema.")); return; }
    const headers = key.value.trim() ? { "Idempotency-Key": key.value.trim() } : {};
    try {
      const run = await post("/v1/runs", { workflow: name, version, input: current() }, { headers });
      location.hash = `#/runs/${enc(run.id)}`;
    } catch (err) { mount(out, errorBox(err)); }
  } },
  Object.values(fields).map((f) => f.node),
  h("label", { for: "run-input" }, "Input (JSON)"), json, issues,
  h("label", { for: "idempotency-key" }, "Idempotency key"), key,
  h("button", { type: "submit", class: "primary", id: "start-run" }, `Start a run of v${version}`), out);
  check();
  return form;
}

export function renderOne(root, name) {
  const body = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  mount(root, h("p", {}, h("a", { href: "#/workflows" }, "← Workflows")),
    h("div", { class: "page-head" }, h("h1", {}, name)), body);

  async function show(version) {
    let detail, wf;
    try {
      detail = await get(`/v1/workflows/${enc(name)}`);
      wf = version && version !== detail.version ? await get(`/v1/workflows/${enc(name)}/versions/${version}`) : detail;
    } catch (err) { mount(body, errorBox(err)); return; }
    const def = wf.definition || {};
    const versions = h("select", { id: "wf-version", "aria-label": "Version", onchange: (e) => show(Number(e.target.value)) },
      (detail.versions || [{ version: detail.version, created_at: detail.created_at }]).map((v) =>
        h("option", { value: v.version, selected: v.version === wf.version }, `v${v.version} — ${fmtTime(v.created_at)}`)));
    mount(body,
      h("div", { class: "toolbar" }, versions, h("a", { href: `#/runs?workflow=${enc(name)}` }, "Runs of this workflow"),
        def.description ? h("span", { class: "muted" }, def.description) : null),
      h("section", { class: "card" }, h("h2", {}, "Graph"), h("div", { class: "graph-box" }, drawGraph(def.tasks || {}))),
      h("div", { class: "two" },
        h("section", { class: "card" }, h("h2", {}, "Start a run"), startForm(name, wf.version, def.input_schema || null)),
        h("section", { class: "card" }, h("h2", {}, "Definition (YAML)"), h("pre", { class: "code yaml" }, toYaml(def)))));
  }
  show(null);
}
