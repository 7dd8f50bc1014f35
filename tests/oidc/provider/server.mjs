// A real OpenID Provider (panva's oidc-provider) for the test suite, on loopback only.
//
//   node server.mjs [--port N] [--exit-with-stdin]
//
// Port: --port, else $OIDC_PORT, else 0 (the system picks a free one). The issuer is
// http://127.0.0.1:<port> unless $OIDC_ISSUER says otherwise. The configuration is the
// JSON in $OIDC_PROVIDER_CONFIG: the JSON text itself, or the path of a file holding it:
//
//   {
//     "clients":   [{ "client_id", "client_secret", "redirect_uris", ...client metadata }],
//     "accounts":  [{ "sub", "email", "email_verified", "name", "role"? }],
//     "resources": [{ "indicator", "scope", "audience"?, "alg"?, "accessTokenTTL"? }],
//     "ttl":       { "AccessToken": 3600, ... }?,
//     "jwks":      { "keys": [private JWKs] }?
//   }
//
// Once listening it prints one line, "READY <issuer> <port>", on stdout and nothing else there
// (diagnostics go to stderr). With --exit-with-stdin it exits when its stdin closes, so
// it never outlives the test process that started it.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import { Provider, errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'exit-with-stdin': { type: 'boolean', default: false },
  },
});

function loadConfig() {
  const raw = process.env.OIDC_PROVIDER_CONFIG;
  if (!raw) return {};
  return JSON.parse(raw.trimStart().startsWith('{') ? raw : fs.readFileSync(raw, 'utf8'));
}

function signingKeys() {
  const rsa = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ec = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const kid = () => crypto.randomBytes(8).toString('hex');
  return {
    keys: [
      { ...rsa.export({ format: 'jwk' }), kid: `rs256-${kid()}`, alg: 'RS256', use: 'sig' },
      { ...ec.export({ format: 'jwk' }), kid: `es256-${kid()}`, alg: 'ES256', use: 'sig' },
    ],
  };
}

const config = loadConfig();
const accounts = new Map((config.accounts ?? []).map((account) => [account.sub, account]));
const resources = new Map((config.resources ?? []).map((resource) => [resource.indicator, resource]));

const configuration = {
  clients: config.clients ?? [],
  clientDefaults: {
    grant_types: ['authorization_code'],
    id_token_signed_response_alg: 'RS256',
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  jwks: config.jwks ?? signingKeys(),
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  pkce: { methods: ['S256'], required: () => true },
  scopes: ['openid', 'email', 'profile', 'offline_access'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Scope-requested claims go in the ID token too, not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A code granted for one resource is exchanged for a JWT access token for it,
      // without repeating "resource" at the token endpoint.
      useGrantedResource: () => true,
      getResourceServerInfo(ctx, indicator) {
        const resource = resources.get(indicator);
        if (!resource) throw new errors.InvalidTarget();
        return {
          scope: resource.scope,
          audience: resource.audience ?? indicator,
          accessTokenFormat: 'jwt',
          ...(resource.accessTokenTTL ? { accessTokenTTL: resource.accessTokenTTL } : {}),
          jwt: { sign: { alg: resource.alg ?? 'RS256' } },
        };
      },
    },
  },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 60,
    ClientCredentials: 600,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Interaction: 3600,
    Session: 24 * 3600,
    Grant: 24 * 3600,
    ...config.ttl,
  },
  async findAccount(ctx, sub) {
    const account = accounts.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        const { role, ...claims } = account;
        return claims;
      },
    };
  },
  // The account's role and address go into its access tokens (not into ID tokens), as
  // Keycloak puts them there.
  async extraTokenClaims(ctx, token) {
    const account = token.accountId ? accounts.get(token.accountId) : undefined;
    if (!account) return undefined;
    const claims = {};
    if (account.role !== undefined) claims.role = account.role;
    if (account.email !== undefined) claims.email = account.email;
    return claims;
  },
};

const server = http.createServer();
server.listen(Number(args.port ?? process.env.OIDC_PORT ?? 0), '127.0.0.1', async () => {
  const issuer = process.env.OIDC_ISSUER ?? `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, configuration);
  for (const event of ['server_error', 'authorization.error', 'grant.error']) {
    provider.on(event, (ctx, err) => console.error(`${event}: ${err?.stack ?? err}`));
  }
  // Static clients are validated when first used: do it now, so a bad one stops the start.
  try {
    await Promise.all(configuration.clients.map(({ client_id: id }) => provider.Client.find(id)));
  } catch (err) {
    console.error(`invalid client metadata: ${err.message}: ${err.error_description ?? ''}`);
    process.exit(1);
  }
  server.on('request', provider.callback());
  process.stdout.write(`READY ${issuer} ${server.address().port}\n`);
});

if (args['exit-with-stdin']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
