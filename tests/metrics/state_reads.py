"""What the dashboard reads of the state, recorded in the browser, and the check against the schema.

`RECORD_STATE_READS` is a Playwright init script: every `/api/state` document the page parses
(JSON.parse of an object with `version`, `cameras` and `live_view_interval_s`) is wrapped in
Proxies that record each property path the page's code reads, array elements as `[]`.
`window.stateReads()` returns them as lists of path segments. `undeclared_reads` names the paths
the published JSON Schema does not declare.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

RECORD_STATE_READS = """
(() => {
  const reads = new Set();
  const proxies = new WeakMap();
  const parse = JSON.parse;
  const isState = (value) => value !== null && typeof value === "object" && !Array.isArray(value)
    && "version" in value && "cameras" in value && "live_view_interval_s" in value;
  function wrap(value, path) {
    if (value === null || typeof value !== "object") return value;
    if (proxies.has(value)) return proxies.get(value);
    const proxy = new Proxy(value, {
      get(target, property, receiver) {
        const result = Reflect.get(target, property, receiver);
        if (typeof property === "symbol") return result;
        if (Array.isArray(target)) {
          return /^[0-9]+$/.test(property) ? wrap(result, [...path, "[]"]) : result;
        }
        const own = Object.prototype.hasOwnProperty.call(target, property);
        if (!own && property in Object.prototype) return result;  // toString, constructor...
        reads.add(JSON.stringify([...path, property]));
        return wrap(result, [...path, property]);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  }
  JSON.parse = function (text, reviver) {
    const value = parse.call(this, text, reviver);
    return isState(value) ? wrap(value, []) : value;
  };
  window.stateReads = () => [...reads].map((read) => parse(read));
})();
"""

ARRAY_ITEM = "[]"


def undeclared_reads(reads: Iterable[Sequence[str]], schema: dict[str, Any]) -> list[str]:
    """The paths (joined with '.') that lead outside what the schema declares: a property no
    object declares, or an element of something that is not an array. Map keys (objects with
    `additionalProperties`) may be any name."""
    definitions = schema.get("$defs", {})

    def alternatives(node: dict[str, Any]) -> list[dict[str, Any]]:
        if "$ref" in node:
            return alternatives(definitions[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return [option for choice in node["anyOf"] for option in alternatives(choice)]
        return [node]

    def step(node: dict[str, Any], part: str) -> list[dict[str, Any]]:
        found = []
        for option in alternatives(node):
            if part == ARRAY_ITEM:
                if option.get("type") == "array" and "items" in option:
                    found.append(option["items"])
            elif part in option.get("properties", {}):
                found.append(option["properties"][part])
            elif isinstance(option.get("additionalProperties"), dict):
                found.append(option["additionalProperties"])
        return found

    undeclared = []
    for path in reads:
        nodes = [schema]
        for part in path:
            nodes = [child for node in nodes for child in step(node, part)]
            if not nodes:
                undeclared.append(".".join(path))
                break
    return sorted(undeclared)
