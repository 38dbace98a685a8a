// hostplane console, usage page: draws the server's figures (the JSON block #usage-data, the
// same numbers as the table) as a stacked bar chart with Chart.js 4.5.1, vendored beside this
// file (chart.umd.min.js, MIT, see chart.js.LICENSE.md; no CDN). The radio buttons switch the
// chart between requests, failures, tokens and cost without a reload.
(function () {
  var canvas = document.getElementById("usage-chart");
  var source = document.getElementById("usage-data");
  if (!canvas || !source || !window.Chart) return;
  var data = JSON.parse(source.textContent);
  var COLOURS = ["#3572b0", "#e07b00", "#2e9e44", "#c0392b", "#8e44ad",
                 "#16a2b8", "#b8860b", "#d63384", "#5d6d7e", "#6f42c1"];
  var OTHERS = "#aaa"; // the 11th series: the server sums the split values past the busiest ten
  var TITLES = {requests: "requests", failures: "failed requests", tokens: "tokens (prompt + completion)", cost: "cost (EUR)"};

  function datasets(metric) {
    return data.series.map(function (s, n) {
      // Cost stays the API's exact decimal string; Chart.js reads it as a number to draw it.
      var colour = n < COLOURS.length ? COLOURS[n] : OTHERS;
      return {label: s.label, data: s[metric].slice(), backgroundColor: colour};
    });
  }

  var metric = "requests";
  canvas.setAttribute("data-metric", metric);
  var chart = new Chart(canvas, {
    type: "bar",
    data: {labels: data.labels, datasets: datasets(metric)},
    options: {
      animation: false, // the figures are there at once (and nothing moves for those who'd rather not)
      responsive: true,
      maintainAspectRatio: false,
      scales: {
        x: {stacked: true, title: {display: true, text: data.interval === "hour" ? "hour (UTC)" : "day (UTC)"}},
        y: {stacked: true, beginAtZero: true, title: {display: true, text: TITLES[metric]},
            ticks: {precision: 0}} // whole requests and tokens; the cost lifts it
      },
      plugins: {legend: {position: "bottom"}}
    }
  });

  var switcher = document.querySelector(".metric-switch");
  if (!switcher) return;
  switcher.hidden = false;
  switcher.addEventListener("change", function (event) {
    metric = event.target.value;
    var next = datasets(metric);
    chart.data.datasets.forEach(function (d, n) { d.data = next[n].data; });
    chart.options.scales.y.title.text = TITLES[metric];
    chart.options.scales.y.ticks.precision = metric === "cost" ? undefined : 0;
    chart.update();
    canvas.setAttribute("data-metric", metric);
  });
})();
