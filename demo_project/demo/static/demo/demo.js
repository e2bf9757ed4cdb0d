// Small helpers for the rate-limit and rush buttons; every page works without them too.
(function () {
  "use strict";

  function csrfToken() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  var ping = document.getElementById("ping");
  if (ping) {
    ping.addEventListener("click", async function () {
      var table = document.getElementById("ping-table");
      var body = table.querySelector("tbody");
      body.innerHTML = "";
      table.hidden = false;
      ping.disabled = true;
      var calls = parseInt(ping.dataset.calls, 10);
      // One after another, like the seed's twelve requests: each line is one decision.
      for (var i = 1; i <= calls; i++) {
        var response = await fetch(ping.dataset.url, { headers: { Accept: "application/json" } });
        var row = document.createElement("tr");
        row.className = response.status === 429 ? "rejected" : "allowed";
        [
          String(i),
          response.status === 429 ? "429 reject" : response.status + " allow",
          response.headers.get("RateLimit-Limit"),
          response.headers.get("RateLimit-Remaining"),
          response.headers.get("RateLimit-Reset"),
          response.headers.get("Retry-After") || "",
        ].forEach(function (text) {
          var cell = document.createElement("td");
          cell.textContent = text === null ? "" : text;
          row.appendChild(cell);
        });
        body.appendChild(row);
      }
      ping.disabled = false;
    });
  }

  document.querySelectorAll("button.rush").forEach(function (button) {
    button.addEventListener("click", async function () {
      var out = document.getElementById("rush-result");
      var buyers = parseInt(button.dataset.buyers, 10);
      var naive = button.dataset.naive === "1";
      out.hidden = false;
      out.textContent = "Sending " + buyers + " bookings at once" + (naive ? " without the lock" : " with the lock") + "…";
      var requests = [];
      for (var i = 1; i <= buyers; i++) {
        var form = new FormData();
        form.append("buyer", (naive ? "naive-" : "rush-") + i);
        form.append("naive", naive ? "1" : "0");
        requests.push(
          fetch(button.dataset.url, {
            method: "POST",
            body: form,
            headers: { "X-CSRFToken": csrfToken(), Accept: "application/json" },
          }).then(function (r) { return r.json(); })
        );
      }
      var results = await Promise.all(requests);
      var counts = {};
      results.forEach(function (r) { counts[r.status] = (counts[r.status] || 0) + 1; });
      out.textContent = Object.keys(counts).sort().map(function (k) { return k + ": " + counts[k]; }).join("\n") +
        "\n\nReloading to show the bookings…";
      setTimeout(function () { window.location.reload(); }, 1500);
    });
  });
})();
