// memadvise report: hover tooltips. The charts are drawn server-side as SVG; this
// script only reads data already in the page and never loads anything.
(function () {
  "use strict";
  var body = document.body;
  var errors = 0;
  window.addEventListener("error", function () {
    errors += 1;
    body.setAttribute("data-js-errors", String(errors));
  });
  var tip = document.getElementById("tip");

  function group(n) {
    return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }
  function human(n) {
    var units = [["GiB", 1073741824], ["MiB", 1048576], ["KiB", 1024]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(n) >= units[i][1]) return (n / units[i][1]).toFixed(1) + " " + units[i][0];
    }
    return Math.round(n) + " B";
  }
  function exact(n) {
    return group(n) + " B" + (Math.abs(n) >= 1024 ? " (" + human(n) + ")" : "");
  }
  function pad(s, n) {
    s = String(s);
    while (s.length < n) s += " ";
    return s;
  }
  function show(text, ev) {
    tip.textContent = text;
    tip.style.display = "block";
    move(ev);
  }
  function move(ev) {
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 4) x = Math.max(4, ev.clientX - w - 14);
    if (y + h > window.innerHeight - 4) y = Math.max(4, ev.clientY - h - 14);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hide() {
    tip.style.display = "none";
  }

  // plain tooltips: any element with data-tip
  document.addEventListener("mouseover", function (ev) {
    var el = ev.target.closest && ev.target.closest("[data-tip]");
    if (el) show(el.getAttribute("data-tip"), ev);
  });
  document.addEventListener("mousemove", function (ev) {
    if (ev.target.closest && ev.target.closest("[data-tip]")) move(ev);
  });
  document.addEventListener("mouseout", function (ev) {
    if (ev.target.closest && ev.target.closest("[data-tip]")) hide();
  });

  // timelines: the bucket under the cursor, every category, recorded and predicted
  var dataEl = document.getElementById("timeline-data");
  var data = dataEl ? JSON.parse(dataEl.textContent) : null;

  function timelineText(k) {
    var n = data.n, nb = data.buckets;
    var lo = Math.ceil(k * n / nb), hi = Math.max(lo, Math.ceil((k + 1) * n / nb) - 1);
    var name = data.op[k] >= 0 ? data.names[data.op[k]] : "?";
    var mod = data.mod[k] >= 0 ? data.names[data.mod[k]] : "";
    var lines = [(lo === hi ? "op " + group(lo) : "ops " + group(lo) + "-" + group(hi)) + " (" + data.phase[k] + ")",
                 "largest after " + name + (mod ? " in " + mod : "")];
    var head = pad("", 17) + pad("recorded", 26) + (data.pred ? "predicted " + data.plan : "");
    lines.push(head);
    var tb = 0, tp = 0;
    for (var c = 0; c < data.cats.length; c++) {
      var b = data.base[k][c], p = data.pred ? data.pred[k][c] : 0;
      tb += b; tp += p;
      if (!b && !p) continue;
      lines.push(pad(data.labels[c], 17) + pad(exact(b), 26) + (data.pred ? exact(p) : ""));
    }
    lines.push(pad("total", 17) + pad(exact(tb), 26) + (data.pred ? exact(tp) : ""));
    if (data.pred && data.rc[k]) lines.push("recomputes here; predicted max after " + data.names[data.pred_op[k]]);
    return lines.join("\n");
  }

  function svgX(svg, ev) {
    var pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    return pt.matrixTransform(svg.getScreenCTM().inverse()).x;
  }

  Array.prototype.forEach.call(document.querySelectorAll("rect.hover[data-timeline]"), function (rect) {
    var svg = rect.ownerSVGElement;
    var cursor = svg.querySelector("line.cursor");
    var x0 = rect.x.baseVal.value, w = rect.width.baseVal.value;
    rect.addEventListener("mousemove", function (ev) {
      if (!data) return;
      var x = svgX(svg, ev);
      var k = Math.min(data.buckets - 1, Math.max(0, Math.floor((x - x0) / w * data.buckets)));
      var cx = x0 + (k + 0.5) * w / data.buckets;
      cursor.setAttribute("x1", cx); cursor.setAttribute("x2", cx);
      cursor.setAttribute("visibility", "visible");
      show(timelineText(k), ev);
    });
    rect.addEventListener("mouseleave", function () {
      cursor.setAttribute("visibility", "hidden");
      hide();
    });
  });

  // what the browser drew: series with a non-empty box, per chart (read by the tests)
  Array.prototype.forEach.call(document.querySelectorAll("svg.chart"), function (svg) {
    var drawn = 0;
    Array.prototype.forEach.call(svg.querySelectorAll("[data-series]"), function (el) {
      var b = el.getBBox();
      if (b.width > 0 && b.height > 0) drawn += 1;
    });
    svg.setAttribute("data-drawn", String(drawn));
  });

  // "#selftest": hover the middle of every chart and keep what the tooltip said
  if (location.hash === "#selftest") {
    Array.prototype.forEach.call(document.querySelectorAll("svg.chart"), function (svg) {
      var target = svg.querySelector("rect.hover") || svg.querySelector("[data-tip]");
      if (!target) return;
      var r = target.getBoundingClientRect();
      var opts = {bubbles: true, clientX: r.left + r.width / 2, clientY: r.top + r.height / 2};
      target.dispatchEvent(new MouseEvent("mouseover", opts));
      target.dispatchEvent(new MouseEvent("mousemove", opts));
      svg.setAttribute("data-hover", tip.textContent);
      hide();
    });
  }
  body.setAttribute("data-render-ms", String(Math.round(performance.now())));
  body.setAttribute("data-ready", "1");
})();
