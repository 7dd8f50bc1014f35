// The page an emailed link opens: the token is in the URL fragment, which the browser
// never sends to a server; this script posts it to the API and shows the answer.
"use strict";
(function () {
  const form = document.getElementById("link-form");
  const status = document.getElementById("status");
  const wantsPassword = form.dataset.password === "true";
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token") || "";
  // Drop the token from the address bar and the history once read.
  history.replaceState(null, "", window.location.pathname);
  if (wantsPassword) {
    document.getElementById("password-field").hidden = false;
  }
  if (!token) {
    status.textContent = "This link has no token: open the link from the email again.";
    form.hidden = true;
    return;
  }
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const body = { token: token };
    if (wantsPassword) {
      body.new_password = document.getElementById("new-password").value;
    }
    const response = await fetch(form.dataset.action, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    });
    if (response.status === 204) {
      status.textContent = "Done. You can close this page and log in.";
      form.hidden = true;
      return;
    }
    let problem = {};
    try { problem = await response.json(); } catch (e) { /* not JSON */ }
    const reasons = (problem.errors || []).map(function (e) { return e.msg; }).join(" ");
    status.textContent = (problem.detail || "Something went wrong.") + (reasons ? " " + reasons : "");
  });
})();
