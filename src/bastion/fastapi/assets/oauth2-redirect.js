// The OAuth2 redirect page of Swagger UI: hands the parameters the authorization server
// returned (in the fragment or the query) to the docs window that opened this one, then
// closes. Same behaviour as Swagger UI's own oauth2-redirect.html, as an external script.
"use strict";
(function () {
  function run() {
    const oauth2 = window.opener && window.opener.swaggerUIRedirectOauth2;
    if (!oauth2) {
      document.body.textContent = "Open this page from the API docs' Authorize dialog.";
      return;
    }
    const source = /code|token|error/.test(window.location.hash)
      ? window.location.hash.substring(1).replace("?", "&")
      : window.location.search.substring(1);
    const qp = Object.fromEntries(new URLSearchParams(source));
    const isValid = qp.state === oauth2.state;
    const flow = oauth2.auth.schema.get("flow");
    const codeFlow = ["accessCode", "authorizationCode", "authorization_code"].includes(flow);
    if (codeFlow && !oauth2.auth.code) {
      if (!isValid) {
        oauth2.errCb({
          authId: oauth2.auth.name,
          source: "auth",
          level: "warning",
          message: "Authorization may be unsafe: the state sent was not the state returned.",
        });
      }
      if (qp.code) {
        delete oauth2.state;
        oauth2.auth.code = qp.code;
        oauth2.callback({ auth: oauth2.auth, redirectUrl: oauth2.redirectUrl });
      } else {
        const reason = qp.error
          ? "[" + qp.error + "]: " +
            (qp.error_description ? qp.error_description + ". " : "no code received. ") +
            (qp.error_uri ? "More info: " + qp.error_uri : "")
          : "[Authorization failed]: no code received from the server.";
        oauth2.errCb({ authId: oauth2.auth.name, source: "auth", level: "error", message: reason });
      }
    } else {
      oauth2.callback({
        auth: oauth2.auth,
        token: qp,
        isValid: isValid,
        redirectUrl: oauth2.redirectUrl,
      });
    }
    window.close();
  }
  if (document.readyState !== "loading") {
    run();
  } else {
    document.addEventListener("DOMContentLoaded", run);
  }
})();
