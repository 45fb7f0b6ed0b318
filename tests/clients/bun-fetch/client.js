// The Bun test client of the integration tests, compiled with
// `bun build --compile` into a single native executable (BoringSSL linked in,
// its symbols stripped): POSTs a file's bytes as JSON over HTTPS and prints
// the status and the response body.
//
// Usage: app <url> <body-file>
// The server is a local test server with a self-signed certificate, so
// certificate verification is disabled.
const [url, file] = process.argv.slice(2);
if (!url || !file) {
  console.error("usage: app <url> <body-file>");
  process.exit(2);
}
const body = await Bun.file(file).text();
const response = await fetch(url, {
  method: "POST",
  body,
  headers: { "content-type": "application/json" },
  tls: { rejectUnauthorized: false },
});
console.log(response.status);
console.log(await response.text());
