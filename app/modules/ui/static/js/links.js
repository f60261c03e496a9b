// Deep links: every run, task, attempt and map item has a URL that opens its view.

import { enc } from "./api.js";

export const runHref = (id) => `#/runs/${enc(id)}`;
export const taskHref = (id, task) => `${runHref(id)}/tasks/${enc(task)}`;
export const attemptHref = (id, task, attempt) => `${taskHref(id, task)}/attempts/${attempt}`;
export const itemHref = (id, task, index) => `${taskHref(id, task)}/items/${index}`;

/** `#/runs/{id}[/tasks/{task}[/attempts/{n} | /items/{i}]]`, as a match for `targetOf`. */
export const RUN_ROUTE = /^#\/runs\/([^/?]+)(?:\/tasks\/([^/?]+)(?:\/(attempts|items)\/(\d+))?)?$/;

/** What a run URL points at: {id, task, attempt, item} (null for the parts it lacks). */
export function targetOf(match) {
  const number = (kind) => (match[3] === kind ? Number(match[4]) : null);
  return {
    id: decodeURIComponent(match[1]),
    task: match[2] ? decodeURIComponent(match[2]) : null,
    attempt: number("attempts"),
    item: number("items"),
  };
}

let settings = null;

/** The dashboard's settings from the server (`[ui]` in the config), fetched once. */
export function uiSettings() {
  settings ||= fetch("/ui/settings.json", { headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  return settings;
}

/** The tracing UI's URL of a trace, from `ui.trace_url_template`; null without one. */
export function traceHref(template, traceId) {
  if (!template || !traceId) return null;
  const url = template.replaceAll("{trace_id}", enc(traceId));
  return /^https?:\/\//i.test(url) ? url : null; // never a javascript: or data: link
}
