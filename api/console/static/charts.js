// The figures page's charts (Apache ECharts, served from static/vendor): the data is the JSON
// block #chart-data the server rendered from jiesu.stats (the same figures as the tables).
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var data = JSON.parse(document.getElementById("chart-data").textContent);
    var font = { fontFamily: "Noto Sans CJK SC, sans-serif" };
    var shown = ["受理量", "办结量", "超时量"];
    var daily = echarts.init(document.getElementById("chart-daily"));
    daily.setOption({
      textStyle: font, tooltip: { trigger: "axis" }, legend: { top: 0 },
      grid: { left: 40, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: data.days.map(function (d) { return d.slice(5); }) },
      yAxis: { type: "value", minInterval: 1 },
      series: data.counts.filter(function (s) { return shown.indexOf(s.name) >= 0; })
        .map(function (s) { return { name: s.name, type: s.name === "受理量" ? "bar" : "line", data: s.data }; })
    });
    var rates = echarts.init(document.getElementById("chart-rates"));
    // every rate named (interval 0: ECharts otherwise hides every other label when they are
    // close), and a rate without cases (0/0, "—" in the table) said as 无数据, not drawn as 0%
    rates.setOption({
      textStyle: font, tooltip: {}, grid: { left: 90, right: 50, top: 10, bottom: 30 },
      xAxis: { type: "value", max: 100, axisLabel: { formatter: "{value}%" } },
      yAxis: { type: "category", axisLabel: { interval: 0 },
               data: data.rates.map(function (r) { return r.name; }) },
      series: [{ type: "bar", data: data.rates.map(function (r) {
        return r.value === null ? { value: 0, label: { formatter: "无数据" } } : Math.round(r.value * 1000) / 10; }),
        label: { show: true, position: "right", formatter: "{c}%" } }]
    });
    // no unit ranked: the page has no ranking chart, its table says 暂无数据
    var rankingBox = document.getElementById("chart-ranking");
    var ranking = rankingBox && echarts.init(rankingBox);
    if (ranking) ranking.setOption({
      textStyle: font, tooltip: {}, grid: { left: 160, right: 40 },
      xAxis: { type: "value" },
      yAxis: { type: "category", inverse: true, data: data.ranking.map(function (r) { return r.name; }) },
      series: [{ type: "bar", barMaxWidth: 28, data: data.ranking.map(function (r) { return r.score; }), label: { show: true, position: "right" } }]
    });
    window.addEventListener("resize", function () { daily.resize(); rates.resize(); if (ranking) ranking.resize(); });
  });
})();
