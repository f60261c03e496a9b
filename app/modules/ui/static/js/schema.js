// A JSON Schema subset for checking run input in the browser before the API does.
// The server validates against the full schema; this catches the common mistakes early.

const TYPES = {
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: Array.isArray,
  string: (v) => typeof v === "string",
  integer: Number.isInteger,
  number: (v) => typeof v === "number" && Number.isFinite(v),
  boolean: (v) => typeof v === "boolean",
  null: (v) => v === null,
};

/** A list of {path, message}; empty when `value` satisfies `schema`. */
export function validate(schema, value, path = "input") {
  const out = [];
  if (!schema || typeof schema !== "object") return out;
  const types = schema.type === undefined ? null : [].concat(schema.type);
  if (types && !types.some((t) => TYPES[t] && TYPES[t](value))) {
    out.push({ path, message: `must be ${types.join(" or ")}` });
    return out;
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    out.push({ path, message: `must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}` });
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    out.push({ path, message: `must be ${JSON.stringify(schema.const)}` });
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) out.push({ path, message: `must be ≥ ${schema.minimum}` });
    if (schema.maximum !== undefined && value > schema.maximum) out.push({ path, message: `must be ≤ ${schema.maximum}` });
  }
  if (typeof value === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) out.push({ path, message: `needs at least ${schema.minLength} characters` });
    if (schema.maxLength !== undefined && value.length > schema.maxLength) out.push({ path, message: `allows at most ${schema.maxLength} characters` });
    if (schema.pattern) {
      try { if (!new RegExp(schema.pattern, "u").test(value)) out.push({ path, message: `must match ${schema.pattern}` }); } catch { /* server decides */ }
    }
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push({ path, message: `needs at least ${schema.minItems} items` });
    if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push({ path, message: `allows at most ${schema.maxItems} items` });
    if (schema.items && typeof schema.items === "object") value.forEach((item, i) => out.push(...validate(schema.items, item, `${path}[${i}]`)));
  }
  if (TYPES.object(value)) {
    for (const name of schema.required || []) if (!(name in value)) out.push({ path: `${path}.${name}`, message: "is required" });
    const props = schema.properties || {};
    for (const [name, item] of Object.entries(value)) {
      if (props[name]) out.push(...validate(props[name], item, `${path}.${name}`));
      else if (schema.additionalProperties === false) out.push({ path: `${path}.${name}`, message: "is not allowed" });
      else if (schema.additionalProperties && typeof schema.additionalProperties === "object") out.push(...validate(schema.additionalProperties, item, `${path}.${name}`));
    }
  }
  return out;
}
