// rdg explorer: draws a node's neighbourhood from the graph API, as of a time chosen on the slider.
// Every /v1 call carries the bearer token kept in sessionStorage; window.rdgExplorer exposes the
// state (and window.cy the Cytoscape instance) for tests.
(function () {
  "use strict";
  const COLORS = { account: "#1f77b4", profile: "#ff7f0e", device: "#2ca02c", title: "#d62728", game: "#9467bd" };
  const SPAN_MS = 30 * 86400000;  // the slider covers the last 30 days, or the times seen, if longer
  const state = { model: null, expanded: [], asOf: null, minTs: null, maxTs: null, loading: 0 };
  const $ = (id) => document.getElementById(id);
  const status = (msg, err) => { $("status").textContent = msg; $("status").className = err ? "error" : ""; };

  function token() { return sessionStorage.getItem("rdg.token") || ""; }
  $("token").value = token();
  $("token-state").textContent = token() ? "token set" : "no token";
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("rdg.token", $("token").value.trim());
    $("token-state").textContent = token() ? "token set" : "no token";
  });

  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
    if (r.status === 401 || r.status === 403) throw new Error("the API refused the token (" + r.status + ")");
    if (r.status === 404) return null;
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
    return body;
  }

  if (typeof cytoscape !== "function") {
    status("Cytoscape.js is not vendored: run scripts/vendor_js.sh (or scripts/bootstrap.sh)", true);
    return;
  }
  const cy = cytoscape({
    container: $("graph"),
    style: [
      { selector: "node", style: { "background-color": "data(color)", label: "data(label)", "font-size": 10,
        "text-valign": "bottom", "text-margin-y": 3, width: 22, height: 22 } },
      { selector: "node.expanded", style: { "border-width": 3, "border-color": "#333" } },
      { selector: "edge", style: { width: 1.5, "curve-style": "bezier", "target-arrow-shape": "triangle",
        label: "data(label)", "font-size": 8, "text-rotation": "autorotate", "line-color": "#999",
        "target-arrow-color": "#999", "text-background-color": "#fff", "text-background-opacity": 0.8 } },
      { selector: "edge.expired", style: { "line-style": "dashed", "line-color": "#ccc" } },
    ],
    layout: { name: "grid" },
    maxZoom: 1.2,  // a small neighbourhood stays at reading size instead of filling the screen
    minZoom: 0.2,
  });
  window.cy = cy;

  const nid = (type, id) => type + "/" + id;
  const fmt = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";

  function addNode(type, id, props) {
    const key = nid(type, id);
    if (cy.getElementById(key).empty()) {
      const label = type + ": " + id + (props && props.device_type ? " (" + props.device_type + ")" : "")
        + (props && props.name ? " (" + props.name + ")" : "");
      cy.add({ group: "nodes", data: { id: key, type: type, nodeId: id, label: label, color: COLORS[type] || "#777" } });
    }
    return key;
  }

  async function neighbourhood(type, id) {
    // every edge type touching this node type, out and in, as of the slider's time
    const q = new URLSearchParams({ limit: "100" });
    if (state.asOf !== null) q.set("as_of", String(state.asOf));
    if ($("include-expired").checked) q.set("include_expired", "true");
    const calls = [];
    for (const [edge, ends] of Object.entries(state.model.edges)) {
      for (const dir of ["out", "in"]) {
        if ((dir === "out" ? ends.src : ends.dst) !== type) continue;
        q.set("direction", dir);
        const url = "/v1/edges/" + encodeURIComponent(edge) + "/" + encodeURIComponent(id) + "?" + q.toString();
        calls.push(api(url).then((b) => ({ edge, dir, ends, body: b })));
      }
    }
    return Promise.all(calls);
  }

  async function draw() {
    state.loading++;
    document.body.dataset.state = "loading";
    try {
      cy.elements().remove();
      const journey = [];
      let source = new Set();
      for (const [type, id] of state.expanded) {
        const q = state.asOf !== null ? "?as_of=" + state.asOf : "";
        const node = await api("/v1/nodes/" + encodeURIComponent(type) + "/" + encodeURIComponent(id) + q);
        if (node && node.source) source.add(node.source);
        const key = addNode(type, id, node ? node.properties : null);
        cy.getElementById(key).addClass("expanded");
        for (const r of await neighbourhood(type, id)) {
          if (!r.body) continue;
          if (r.body.source) source.add(r.body.source);
          for (const e of r.body.edges) {
            const s = addNode(r.ends.src, e.src, e.properties);
            const d = addNode(r.ends.dst, e.dst, null);
            const eid = r.edge + ":" + s + "->" + d;
            if (cy.getElementById(eid).empty()) {
              cy.add({ group: "edges", data: { id: eid, source: s, target: d, type: r.edge, updatedAt: e.updated_at,
                label: r.edge + " " + fmt(e.updated_at).slice(5, 16) } });
              journey.push({ t: e.updated_at, edge: r.edge, src: e.src, dst: e.dst, dstType: r.ends.dst, props: e.properties });
              state.minTs = state.minTs === null ? e.updated_at : Math.min(state.minTs, e.updated_at);
              state.maxTs = state.maxTs === null ? e.updated_at : Math.max(state.maxTs, e.updated_at);
            }
          }
        }
      }
      cy.layout({ name: "cose", animate: false, randomize: false, nodeRepulsion: 8000, idealEdgeLength: 140,
        padding: 40 }).run();
      renderJourney(journey);
      status(cy.nodes().length + " nodes, " + cy.edges().length + " edges"
        + (state.asOf !== null ? " as of " + fmt(state.asOf) : "") + (source.size ? " (" + [...source].join(", ") + ")" : ""));
    } catch (err) {
      status(String(err.message || err), true);
    } finally {
      state.loading--;
      document.body.dataset.state = state.loading ? "loading" : "ready";
    }
  }

  function renderJourney(items) {
    // the member's cross-device journey: device, title and game edges in time order
    const ol = $("journey");
    ol.textContent = "";
    items.filter((i) => ["device", "title", "game"].includes(i.dstType)).sort((a, b) => a.t - b.t).forEach((i) => {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = COLORS[i.dstType] || "#777";
      const p = i.props || {};
      const what = i.dst + (p.device_type ? " (" + p.device_type + ")" : p.device_id ? " on " + p.device_id : "");
      li.append(sw, fmt(i.t).slice(5, 16) + " " + i.src + " " + i.edge + " " + what);
      li.dataset.edge = i.edge;
      ol.append(li);
    });
  }

  function sliderTime() {
    const hi = Date.now();
    const lo = Math.min(state.minTs !== null ? state.minTs - 60000 : hi - SPAN_MS, hi - 3600000);
    const v = Number($("slider").value);
    return v >= 1000 ? null : Math.round(lo + (hi - lo) * v / 1000);
  }

  async function setAsOf(ms) {
    // as_of in epoch ms (null: now); moves the slider to match and re-draws
    state.asOf = ms;
    if (ms !== null) {
      const hi = Date.now();
      const lo = Math.min(state.minTs !== null ? state.minTs - 60000 : hi - SPAN_MS, hi - 3600000);
      $("slider").value = String(Math.max(0, Math.min(999, Math.floor((ms - lo) * 1000 / (hi - lo)))));
    } else {
      $("slider").value = "1000";
    }
    $("as-of-label").textContent = ms === null ? "now" : fmt(ms);
    await draw();
  }

  $("slider").addEventListener("change", () => setAsOf(sliderTime()));
  $("slider").addEventListener("input", () => {
    const t = sliderTime();
    $("as-of-label").textContent = t === null ? "now" : fmt(t);
  });
  $("now").addEventListener("click", () => setAsOf(null));
  $("include-expired").addEventListener("change", () => draw());
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    state.expanded = [[$("node-type").value, $("node-id").value.trim()]];
    state.minTs = state.maxTs = null;
    history.replaceState(null, "", "/explore?type=" + encodeURIComponent(state.expanded[0][0])
      + "&id=" + encodeURIComponent(state.expanded[0][1]));
    draw();
  });
  cy.on("tap", "node", (ev) => {
    const n = ev.target;
    if (state.expanded.some(([t, i]) => t === n.data("type") && i === n.data("nodeId"))) return;
    state.expanded.push([n.data("type"), n.data("nodeId")]);
    draw();
  });

  window.rdgExplorer = { state, setAsOf, draw, expand: (type, id) => { state.expanded.push([type, id]); return draw(); } };

  fetch("/explore/model.json").then((r) => r.json()).then((model) => {
    state.model = model;
    for (const t of model.nodes) {
      const o = document.createElement("option");
      o.value = o.textContent = t;
      $("node-type").append(o);
    }
    const p = new URLSearchParams(location.search);
    if (p.get("type")) $("node-type").value = p.get("type");
    if (p.get("id")) {
      $("node-id").value = p.get("id");
      if (token()) $("search").requestSubmit();
    }
    document.body.dataset.state = "ready";
  });
})();
