// A tiny upstream that routes the raw request path as a Node (Express-style) router does: the
// path is matched as sent, segment by segment, with each segment percent-decoded (`%2F` stays
// inside its segment, `..`, `;params` and `\` are left as they are). Routes: `/products/*` and
// `/admin/*`. Each answer names the handler that served it.
//
// Started by tests/paths.rs: prints the port it listens on (loopback, ephemeral), then serves
// until its standard input closes.
const http = require("http");

const routes = [["admin", /^\/admin\/(.*)$/], ["products", /^\/products\/(.*)$/]];

const server = http.createServer((req, res) => {
  const raw = req.url.split("?")[0].split("#")[0];
  let handler = "none";
  for (const [name, rx] of routes) {
    if (rx.test(raw)) {
      handler = name;
      break;
    }
  }
  res.writeHead(handler === "none" ? 404 : 200, { "content-length": handler.length });
  res.end(handler);
});
server.listen(0, "127.0.0.1", () => {
  console.log(server.address().port);
});
process.stdin.on("end", () => server.close(() => process.exit(0)));
process.stdin.resume();
