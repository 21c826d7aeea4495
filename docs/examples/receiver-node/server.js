// A receiver of Switchboard's webhooks: verifies each request's signature
// with the Standard Webhooks library (npm install standardwebhooks) and
// handles each event once, keyed by webhook-id. docs/receivers.md shows
// this file; a test in cmd/switchboard runs it against a real delivery.
const http = require("node:http");
const { Webhook } = require("standardwebhooks");

const wh = new Webhook(process.env.WEBHOOK_SECRET); // whsec_...
// Handled event ids. Keep them where your writes go (a table with a unique
// key on the id) for at least as long as Switchboard retries.
const handled = new Set();

const server = http.createServer((req, res) => {
  if (req.method !== "POST" || req.url !== "/webhooks") {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    // Verify the exact bytes received: parse JSON only afterwards.
    const body = Buffer.concat(chunks).toString("utf8");
    let event;
    try {
      event = wh.verify(body, req.headers);
    } catch (err) {
      res.writeHead(401).end("invalid signature");
      return;
    }
    const id = req.headers["webhook-id"]; // the event id, the same on every retry
    if (handled.has(id)) {
      console.log("duplicate", id);
      res.writeHead(204).end(); // a 2xx, or Switchboard retries
      return;
    }
    handled.add(id);
    console.log("handled", id, JSON.stringify(event));
    res.writeHead(204).end();
  });
});

const [host, port] = process.env.LISTEN.split(":"); // e.g. 127.0.0.1:9000
server.listen(Number(port), host, () => console.log("listening on", process.env.LISTEN));
