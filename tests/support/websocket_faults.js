// Faults for the browser tests, installed before any script of the page runs (CDP
// Page.addScriptToEvaluateOnNewDocument): the browser's own WebSocket, unchanged, except that a
// test can make it lose, delay or swap frames, or drop the connection, as a network or a lost
// route response would. Everything else (the page, chatclient.js, the service) runs for real.
(() => {
  const Native = window.WebSocket;
  const faults = (window.__faults = {
    dropAcks: 0, // lose the next N {"sent": ...} acknowledgements
    dropLive: 0, // lose the next N {"messages": [...]} frames
    delayAcks: 0, // hold the next N acknowledgements for delayMs, then let them through
    delayText: 0, // the same for the next N refusals (plain text, or replies with an error)
    delayMs: 0,
    swapLive: 0, // hold the next N live frames until the live frame after each has gone
    closeAfterSend: 0, // close the connection right after the next N sends of a message
    breakHistoryLimit: 0, // the next N getRecentMessages go with "limit": 1000 (refused: bad_request)
    corruptToken: false, // while true, new connections offer a token with a broken signature
    // (in the subprotocol or ?token=): the service refuses the handshake (403), as it does a
    // token signed with another secret after the local stack restarted
    dropped: [], // what was lost
    sent: [], // every frame the page sent, in order
    sentAt: [], // when each was sent (performance.now(), ms)
    sockets: 0, // how many connections were opened
    urls: [], // the URL of each
    protocols: [], // the subprotocols each offered (the token goes in one: "bearer.<JWT>")
  });
  const replayed = new WeakSet(); // events this file dispatched again: let them through

  const corrupt = ([url, protocols]) => {
    const broken = (token) => `${token}broken`;
    const address = new URL(url);
    if (address.searchParams.has("token")) address.searchParams.set("token", broken(address.searchParams.get("token")));
    const offered = protocols === undefined ? undefined
      : [].concat(protocols).map((p) => (String(p).startsWith("bearer.") ? broken(String(p)) : p));
    return offered === undefined ? [address.toString()] : [address.toString(), offered];
  };

  class FaultyWebSocket extends Native {
    constructor(...given) {
      const args = faults.corruptToken ? corrupt(given) : given;
      super(...args);
      faults.sockets += 1;
      faults.urls.push(String(args[0]));
      faults.protocols.push(args[1] === undefined ? null : [].concat(args[1]).map(String));
      let held = null; // a live frame waiting for the next one (swapLive)
      // The first listener: it can stop a frame before the page's own listeners see it.
      this.addEventListener("message", (event) => {
        if (replayed.has(event)) return;
        const data = String(event.data);
        // A reply to a request with a ref is {"reply": {ref, status, body | error}}: an
        // acknowledgement when its body is {"sent": ...}, a refusal when it has an error.
        const reply = data.startsWith('{"reply"') ? JSON.parse(data).reply : null;
        const ack = data.startsWith('{"sent"') || Boolean(reply?.body && typeof reply.body === "object" && "sent" in reply.body);
        const live = data.startsWith('{"messages"');
        const text = !data.startsWith("{") || Boolean(reply?.error);
        if ((ack && faults.dropAcks > 0) || (live && faults.dropLive > 0)) {
          faults[ack ? "dropAcks" : "dropLive"] -= 1;
          faults.dropped.push(data);
          event.stopImmediatePropagation();
        } else if ((ack && faults.delayAcks > 0) || (text && faults.delayText > 0)) {
          faults[ack ? "delayAcks" : "delayText"] -= 1;
          event.stopImmediatePropagation();
          setTimeout(() => this.#replay(data), faults.delayMs);
        } else if (live && held !== null) {
          const earlier = held;
          held = null;
          setTimeout(() => this.#replay(earlier), 0); // after this one
        } else if (live && faults.swapLive > 0) {
          faults.swapLive -= 1;
          held = data;
          event.stopImmediatePropagation();
        }
      });
    }

    #replay(data) {
      const event = new MessageEvent("message", { data });
      replayed.add(event);
      this.dispatchEvent(event);
    }

    send(data) {
      if (faults.breakHistoryLimit > 0 && /"action":"getRecentMessages"/.test(String(data))) {
        faults.breakHistoryLimit -= 1;
        data = String(data).replace(/"limit":\d+/, '"limit":1000');
      }
      faults.sent.push(String(data));
      faults.sentAt.push(performance.now());
      super.send(data);
      if (faults.closeAfterSend > 0 && /"action":"send(Message|DirectMessage)"/.test(String(data))) {
        faults.closeAfterSend -= 1;
        this.close(4001, "test: closed right after sending");
      }
    }
  }
  window.WebSocket = FaultyWebSocket;
})();
