// The order page's idempotency key and the report page's stampede button.
(function () {
  "use strict";

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  var form = document.getElementById("order-form");
  if (form) {
    var table = document.getElementById("order-table");
    var answers = table.querySelector("tbody");
    var sent = 0;

    async function send() {
      var number = ++sent;
      var response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: {
          "Idempotency-Key": form.dataset.key,
          "X-CSRFToken": csrfToken(),
          Accept: "application/json",
        },
      });
      var text = await response.text();
      var row = document.createElement("tr");
      [
        String(number),
        String(response.status),
        response.headers.get("Idempotent-Replayed") || "",
        text,
      ].forEach(function (value) {
        var cell = document.createElement("td");
        cell.textContent = value;
        row.appendChild(cell);
      });
      answers.appendChild(row);
      table.hidden = false;
      return response.status;
    }

    async function refreshCount() {
      var page = await fetch(window.location.href);
      var html = new DOMParser().parseFromString(await page.text(), "text/html");
      document.querySelector("[data-testid=placed]").textContent =
        html.querySelector("[data-testid=placed]").textContent;
    }

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      await send();
      await refreshCount();
    });
    document.getElementById("double-submit").addEventListener("click", async function () {
      var submits = parseInt(form.dataset.submits, 10);
      var all = [];
      for (var i = 0; i < submits; i++) all.push(send());
      await Promise.all(all);
      await refreshCount();
    });
  }

  var stampede = document.getElementById("stampede");
  if (stampede) {
    stampede.addEventListener("click", async function () {
      var out = document.getElementById("stampede-result");
      var loads = parseInt(stampede.dataset.loads, 10);
      stampede.disabled = true;
      out.hidden = false;
      out.textContent = "Expiring the report, then loading it " + loads + " times at once…";
      await fetch(stampede.dataset.expire, {
        method: "POST",
        headers: { "X-CSRFToken": csrfToken() },
        redirect: "manual",
      });
      var all = [];
      for (var i = 0; i < loads; i++) {
        all.push(fetch(stampede.dataset.url, { headers: { Accept: "application/json" } })
          .then(function (r) { return r.json(); }));
      }
      var results = await Promise.all(all);
      var runs = {};
      results.forEach(function (r) { runs[r.run] = true; });
      out.textContent = results.map(function (r, i) {
        return "load " + (i + 1) + ": computation #" + r.run + ", waited " + r.waited_ms + " ms";
      }).join("\n") + "\n\n" + loads + " loads, " + Object.keys(runs).length +
        " computation(s); computed " + results[results.length - 1].computed + " times in all.";
      stampede.disabled = false;
    });
  }
})();
