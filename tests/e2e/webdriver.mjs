// The one W3C WebDriver call the layout check and the UI's screenshot helper share: plain fetch,
// the answer's `value`, an error naming the call when the driver refuses.
export async function wdCall(base, method, path, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value ?? json)}`);
  return json.value;
}
