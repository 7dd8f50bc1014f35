// Starts Swagger UI on /docs. An external script of ours, so the docs' Content-Security-Policy
// needs no 'unsafe-inline' for scripts; the page's element carries the URLs it needs.
"use strict";
(function () {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    // The token lives in this page only: a reload signs out of the docs.
    persistAuthorization: false,
    // No spec validation by a remote service: the docs reach no other origin.
    validatorUrl: null,
    oauth2RedirectUrl: window.location.origin + root.dataset.oauth2RedirectUrl,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  });
})();
