// A small YAML writer for showing definitions (JSON's data model only).

const PLAIN = /^[A-Za-z_][A-Za-z0-9_ ./-]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;

function scalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  const text = String(v);
  return PLAIN.test(text) && !RESERVED.test(text) && !text.endsWith(" ") ? text : JSON.stringify(text);
}

function key(k) {
  return PLAIN.test(k) && !RESERVED.test(k) ? k : JSON.stringify(k);
}

function isEmpty(v) {
  return (Array.isArray(v) && !v.length) || (v && typeof v === "object" && !Array.isArray(v) && !Object.keys(v).length);
}

function lines(v, indent) {
  const pad = "  ".repeat(indent);
  if (Array.isArray(v)) {
    return v.flatMap((item) => {
      if (item && typeof item === "object" && !isEmpty(item)) {
        const inner = lines(item, indent + 1);
        inner[0] = `${pad}- ${inner[0].trimStart()}`;
        return inner;
      }
      return [`${pad}- ${isEmpty(item) ? JSON.stringify(item) : scalar(item)}`];
    });
  }
  return Object.entries(v).flatMap(([k, item]) => {
    if (item && typeof item === "object" && !isEmpty(item)) return [`${pad}${key(k)}:`, ...lines(item, indent + 1)];
    return [`${pad}${key(k)}: ${isEmpty(item) ? JSON.stringify(item) : scalar(item)}`];
  });
}

/** `value` as YAML text. */
export function toYaml(value) {
  if (value === null || typeof value !== "object") return `${scalar(value)}\n`;
  if (isEmpty(value)) return `${JSON.stringify(value)}\n`;
  return `${lines(value, 0).join("\n")}\n`;
}
